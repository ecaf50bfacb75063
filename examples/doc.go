// Package examples holds programs that show polystore used the way we
// recommend. The example server, under examples/server, wires pgrepo,
// cacherepo, docrepo and coord into a small but production-shaped backend.
package examples
