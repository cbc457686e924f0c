// Command testsummary reads `go test -json` on stdin and prints what a
// reader of a truncated CI log needs: one line per test as it ends, then,
// last, the tail of every failed test's own output, so that the reason of a
// failure is never in the part of the log that is cut. The whole output goes
// to the file named by -log.
//
//	go test -json ./e2e/... | go run ./hack/testsummary -log e2e.log
//
// It exits 1 if any test or package failed, or if the stream ended without a
// package result (a build failure, a killed test binary).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	logPath := flag.String("log", "", "file for the whole output (its directory is created)")
	tail := flag.Int("tail", 40, "lines of each failed test's output printed at the end")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *logPath, *tail))
}

func run(in io.Reader, out io.Writer, logPath string, tail int) int {
	var full io.Writer = io.Discard
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err == nil {
			if f, err := os.Create(logPath); err == nil {
				defer f.Close()
				full = f
			}
		}
	}
	outputs := map[string][]string{} // test → its output lines
	var failed []string
	packages, packageFailed := 0, false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// go test prints build errors as plain text.
			fmt.Fprintln(out, sc.Text())
			fmt.Fprintln(full, sc.Text())
			continue
		}
		switch e.Action {
		case "output":
			io.WriteString(full, e.Output)
			if e.Test != "" {
				outputs[e.Test] = append(outputs[e.Test], strings.TrimRight(e.Output, "\n"))
			} else if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "--- ") {
				io.WriteString(out, e.Output) // package lines: ok, FAIL, panics outside a test
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				packages++
				packageFailed = packageFailed || e.Action == "fail"
				continue
			}
			fmt.Fprintf(out, "--- %s: %s (%s)\n", strings.ToUpper(e.Action), e.Test, (time.Duration(e.Elapsed * float64(time.Second))).Round(100*time.Millisecond))
			if e.Action == "fail" {
				failed = append(failed, e.Test)
			}
		}
	}
	if logPath != "" {
		fmt.Fprintf(out, "the whole output: %s\n", logPath)
	}
	for _, name := range failed {
		lines := outputs[name]
		if len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		fmt.Fprintf(out, "\n=== the last %d lines of %s's output\n", len(lines), name)
		for _, l := range lines {
			if len(l) > 500 {
				l = l[:500] + " […]"
			}
			fmt.Fprintln(out, l)
		}
	}
	if len(failed) > 0 || packageFailed || packages == 0 {
		fmt.Fprintf(out, "\nFAILED: %d tests (%s)\n", len(failed), strings.Join(failed, ", "))
		return 1
	}
	return 0
}
