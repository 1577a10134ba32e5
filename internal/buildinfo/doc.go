// Package buildinfo says which build is running: the module version, the
// VCS revision and the Go version, for every command's --version and the
// mde_offboard_build_info metric.
package buildinfo
