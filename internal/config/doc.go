// Package config reads the tenants file.
package config
