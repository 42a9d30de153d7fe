// Package layers holds no code: its test enforces the import rules that
// docs/development.md states (go list -deps over the module).
package layers
