package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

const stream = `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:1: fine\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":1.5}
{"Action":"run","Package":"p","Test":"TestB/sub"}
{"Action":"output","Package":"p","Test":"TestB/sub","Output":"    b_test.go:9: step node-3-promote failed: connection refused\n"}
{"Action":"fail","Package":"p","Test":"TestB/sub","Elapsed":2}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:20: a long log\n"}
{"Action":"fail","Package":"p","Test":"TestB","Elapsed":3}
{"Action":"output","Package":"p","Output":"FAIL\tp\t3.1s\n"}
{"Action":"fail","Package":"p","Elapsed":3.1}
`

func TestFailuresComeLast(t *testing.T) {
	var out bytes.Buffer
	log := filepath.Join(t.TempDir(), "sub", "e2e.log")
	if code := run(strings.NewReader(stream), &out, log, 40); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	s := out.String()
	if strings.Contains(s, "fine") {
		t.Errorf("a passing test's output was printed:\n%s", s)
	}
	last := s[strings.LastIndex(s, "=== the last"):]
	if !strings.Contains(s, "--- PASS: TestA (1.5s)") || !strings.Contains(last, "TestB's output") || !strings.Contains(s, "connection refused") {
		t.Errorf("output:\n%s", s)
	}
	if i, j := strings.Index(s, "connection refused"), strings.Index(s, "FAIL\tp"); i < j {
		t.Errorf("the failure's reason comes before the package result:\n%s", s)
	}
}

func TestPassesAndMissingResults(t *testing.T) {
	pass := `{"Action":"pass","Package":"p","Test":"TestA","Elapsed":1}
{"Action":"pass","Package":"p","Elapsed":1}
`
	var out bytes.Buffer
	if code := run(strings.NewReader(pass), &out, "", 40); code != 0 {
		t.Errorf("exit %d for a passing package:\n%s", code, out.String())
	}
	// A build failure: plain text and no package result.
	out.Reset()
	if code := run(strings.NewReader("e2e/x.go:1: undefined: y\n"), &out, "", 40); code != 1 || !strings.Contains(out.String(), "undefined: y") {
		t.Errorf("exit %d for a stream without a result:\n%s", code, out.String())
	}
}
