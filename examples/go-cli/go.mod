module warden.dev/examples/go-cli

go 1.24
