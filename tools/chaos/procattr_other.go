//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing where the kernel has no parent-death signal:
// the harness's cleanup is all there is.
func dieWithParent(*exec.Cmd) {}
