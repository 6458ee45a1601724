module buckypaper.test/nitride-cap-check

go 1.25.13

require github.com/hashicorp/cap v0.15.0

require (
	github.com/coreos/go-oidc/v3 v3.11.0 // indirect
	github.com/go-jose/go-jose/v4 v4.1.6 // indirect
	github.com/hashicorp/go-cleanhttp v0.5.2 // indirect
	golang.org/x/oauth2 v0.27.0 // indirect
)
