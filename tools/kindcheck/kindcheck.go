//go:build fastship_kindcheck

// kindcheck validates a kind cluster config file the way `kind create cluster --config`
// does, without creating anything: kind's own loader (strict decoding into the
// v1alpha4 types, then kind's defaulting and conversion) followed by kind's own
// validation. On success it prints JSON: {"kindNodeImage": the release's default node
// image, "configs": {FILE: the loaded, defaulted config}}. Otherwise it exits 1 with
// kind's error messages, one line per file.
//
// kind keeps its loader and validation in internal packages, so build.sh builds this
// file as a package inside a copy of the sigs.k8s.io/kind module, at the version
// pinned in this folder's go.mod.
// kind's go.mod says go 1.17: keep this file within that language version.
//
// Usage: kindcheck FILE...
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kindcheck FILE...")
		os.Exit(2)
	}
	failed := false
	results := map[string]interface{}{}
	for _, path := range os.Args[1:] {
		if path == "" {
			// kind reads "" as "use the default config"; here it is always a mistake.
			fmt.Fprintln(os.Stderr, "kindcheck: empty file name")
			failed = true
			continue
		}
		cfg, err := encoding.Load(path)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: invalid kind config: %v\n", path, err)
			failed = true
			continue
		}
		results[path] = cfg
	}
	if failed {
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	report := map[string]interface{}{"kindNodeImage": defaults.Image, "configs": results}
	if err := out.Encode(report); err != nil {
		fmt.Fprintln(os.Stderr, "kindcheck:", err)
		os.Exit(1)
	}
}
