// Package browsertest drives the coord/coordhttp console in a real headless
// Chromium (Debian's chromium package) with chromedp. It is a module of its
// own so that the browser driver stays out of the library's dependencies;
// it uses the library through a replace directive.
package browsertest
