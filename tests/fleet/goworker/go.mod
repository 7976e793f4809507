module example.com/jwtwarden-fleet-goworker

go 1.22

require github.com/jwtwarden/jwtwarden/bindings/go v0.0.0

replace github.com/jwtwarden/jwtwarden/bindings/go => ../../../bindings/go
