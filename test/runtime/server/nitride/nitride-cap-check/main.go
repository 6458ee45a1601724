// Validates a Nitride workload token with github.com/hashicorp/cap/jwt, the library the JWT auth
// method of HashiCorp Vault and OpenBao uses: keys found through OIDC discovery at the issuer,
// expected issuer, audience and algorithm (ES384 unless a fourth argument names another, e.g. EdDSA).
// Prints the claims as JSON; exits 1 when validation fails.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/cap/jwt"
)

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: nitride-cap-check ISSUER AUDIENCE TOKEN [ALG]")
		os.Exit(2)
	}
	issuer, audience, token := os.Args[1], os.Args[2], os.Args[3]
	alg := jwt.ES384
	if len(os.Args) == 5 {
		alg = jwt.Alg(os.Args[4])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keySet, err := jwt.NewOIDCDiscoveryKeySet(ctx, issuer, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		os.Exit(1)
	}
	validator, err := jwt.NewValidator(keySet)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validator:", err)
		os.Exit(1)
	}
	claims, err := validator.Validate(ctx, token, jwt.Expected{
		Issuer:            issuer,
		Audiences:         []string{audience},
		SigningAlgorithms: []jwt.Alg{alg},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(claims)
}
