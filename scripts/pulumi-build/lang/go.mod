module buckypaper.local/pulumi-language-build

go 1.18

require github.com/pulumi/pulumi/sdk/v3 v3.68.0
