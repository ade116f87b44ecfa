// Package exampleapp holds the annotated functions the runtime/dbos
// examples run, with their generated wrappers in dbos_gen.go.
package exampleapp

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// ErrEmpty is returned for an empty name.
var ErrEmpty = errors.New("exampleapp: empty name")

// The sentinel matches errors.Is after its workflow's error is read back
// from the database.
func init() { dbos.RegisterError(ErrEmpty) }

// Calls counts the greet step's executions, to show what a replay skips.
var Calls int

//dbos:step
func greet(ctx context.Context, name string) (string, error) {
	Calls++
	if strings.TrimSpace(name) == "" {
		return "", ErrEmpty
	}
	return "Hello, " + name + "!", nil
}

// Greeting returns a greeting, durably.
//
//dbos:workflow
func Greeting(ctx context.Context, name string) (string, error) {
	g, err := greetStep(ctx, name)
	if err != nil {
		return "", fmt.Errorf("greeting %q: %w", name, err)
	}
	return g, nil
}
