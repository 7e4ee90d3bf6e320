//go:build nodynamic

package encode

const nodynamic = true
