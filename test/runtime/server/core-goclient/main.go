// A real Vault client for the runtime tests: HashiCorp's Go API package (the one the vault CLI and the
// Terraform provider are built on) doing KV v2, policies, LIST and the token lifecycle against
// VAULT_ADDR with VAULT_TOKEN. Prints a JSON summary for test/runtime/core-goclient.test.ts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/vault/api"
)

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	return v
}

func main() {
	ctx := context.Background()
	c := must(api.NewClient(api.DefaultConfig())) // VAULT_ADDR, VAULT_TOKEN from the environment
	out := map[string]any{}

	status := must(c.Sys().SealStatus())
	out["version"] = status.Version
	out["sealed"] = status.Sealed
	self := must(c.Auth().Token().LookupSelf())
	out["root_policies"] = self.Data["policies"]

	kv := c.KVv2("secret")
	must(kv.Put(ctx, "go/app", map[string]any{"api_key": "go-secret-1"}))
	must(kv.Put(ctx, "go/app", map[string]any{"api_key": "go-secret-2"}, api.WithCheckAndSet(1)))
	_, casErr := kv.Put(ctx, "go/app", map[string]any{"api_key": "x"}, api.WithCheckAndSet(1))
	var respErr *api.ResponseError
	out["cas_refused_400"] = errors.As(casErr, &respErr) && respErr.StatusCode == 400
	s := must(kv.Get(ctx, "go/app"))
	out["read"] = s.Data
	out["version_n"] = s.VersionMetadata.Version
	out["v1"] = must(kv.GetVersion(ctx, "go/app", 1)).Data
	must(kv.Patch(ctx, "go/app", map[string]any{"extra": "y"}))
	out["patched"] = must(kv.Get(ctx, "go/app")).Data
	meta := must(kv.GetMetadata(ctx, "go/app"))
	out["current_version"] = meta.CurrentVersion
	list := must(c.Logical().List("secret/metadata/go"))
	out["list"] = list.Data["keys"]
	ui := must(c.Logical().Read("sys/internal/ui/mounts/secret/go/app"))
	out["preflight_path"] = ui.Data["path"]
	out["preflight_version"] = ui.Data["options"].(map[string]any)["version"]

	if err := c.Sys().PutPolicy("go-ro", `path "secret/data/go/*" { capabilities = ["read"] }`); err != nil {
		must(0, err)
	}
	out["policy"] = must(c.Sys().GetPolicy("go-ro"))
	child := must(c.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"go-ro"}, TTL: "10m", DisplayName: "terraform"}))
	cc := must(c.Clone())
	cc.SetToken(child.Auth.ClientToken)
	out["child_policies"] = child.Auth.Policies
	out["child_read"] = must(cc.KVv2("secret").Get(ctx, "go/app")).Data
	_, werr := cc.KVv2("secret").Put(ctx, "go/app", map[string]any{"x": "y"})
	out["child_write_403"] = errors.As(werr, &respErr) && respErr.StatusCode == 403
	renewed := must(cc.Auth().Token().RenewSelf(3600))
	out["renew_lease"] = renewed.Auth.LeaseDuration
	if err := cc.Auth().Token().RevokeSelf(""); err != nil {
		must(0, err)
	}
	_, lerr := cc.Auth().Token().LookupSelf()
	out["revoked_403"] = errors.As(lerr, &respErr) && respErr.StatusCode == 403
	mounts := must(c.Sys().ListMounts())
	out["secret_mount_type"] = mounts["secret/"].Type
	must(0, json.NewEncoder(os.Stdout).Encode(out))
}
