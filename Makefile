# Thin wrapper so people and CI run the same commands. `make help` lists the targets.
.PHONY: help demo build test check vet fuzz bench ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

demo: ## run the demo (issuer, gateway, demo API) on loopback over HTTPS
	go run ./cmd/portcullis demo

build: ## build bin/portcullis without cgo
	CGO_ENABLED=0 go build -o bin/portcullis ./cmd/portcullis

vet: ## go vet every package
	go vet ./...

test: ## the README's test command (PostgreSQL/Redis tests run when PORTCULLIS_TEST_* are set)
	go test -race ./...

check: vet test ## vet and test

fuzz: ## fuzz every target for FUZZTIME each (default 10s)
	@grep -rlE --include='*_test.go' '^func Fuzz' . | while read -r f; do \
	  for t in $$(grep -oE '^func Fuzz[A-Za-z0-9_]+' $$f | sed 's/^func //'); do \
	    go test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-10s} ./$$(dirname $$f) || exit 1; \
	  done; done

bench: ## Benchmark functions of every package (load harnesses: see docs/development.md)
	go test -run '^$$' -bench . -benchmem ./...

ci: ## what CI runs
	bash .ci/run
