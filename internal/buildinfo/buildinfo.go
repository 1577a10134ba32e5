package buildinfo

import "runtime/debug"

// Info is what the binary was built from.
type Info struct {
	Version   string // module version, "(devel)" for a local build
	Revision  string // VCS revision, "unknown" without one
	GoVersion string
}

// Read reads the binary's build information.
func Read() Info {
	i := Info{Version: "(devel)", Revision: "unknown", GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	i.GoVersion = bi.GoVersion
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			i.Revision = s.Value
		}
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
