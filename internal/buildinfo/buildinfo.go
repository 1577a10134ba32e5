package buildinfo

import "runtime/debug"

// Info is what the binary was built from.
type Info struct {
	Version   string // module version, "(devel)" for a local build
	Revision  string // VCS revision, "unknown" without one
	GoVersion string
}

// version and revision, when set at link time, stand for what Go records:
// an image built without the repository (.git is not copied into the
// build) knows neither, so its build passes them:
//
//	go build -ldflags "-X github.com/contoso-secops/mde-offboard/internal/buildinfo.version=v1.4.0 \
//	  -X github.com/contoso-secops/mde-offboard/internal/buildinfo.revision=$(git rev-parse HEAD)"
var version, revision string

// Read reads the binary's build information.
func Read() Info {
	i := Info{Version: "(devel)", Revision: "unknown", GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.GoVersion = bi.GoVersion
		if bi.Main.Version != "" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				i.Revision = s.Value
			}
		}
	}
	if version != "" {
		i.Version = version
	}
	if revision != "" {
		i.Revision = revision
	}
	return i
}

// String is the version with the revision's first 12 characters, as
// --version prints it.
func (i Info) String() string {
	if len(i.Revision) >= 12 {
		return i.Version + " (" + i.Revision[:12] + ")"
	}
	return i.Version
}
