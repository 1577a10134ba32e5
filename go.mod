module github.com/contoso-secops/mde-offboard

go 1.26.8

require (
	github.com/jonboulle/clockwork v0.5.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
