// Command vmstub stands in for a VM's triad-agent and kube-apiserver in the
// local cloud's tests: it serves a gate health check over HTTPS on
// --ip:--gate-port (200 while the file <disk>/gate-open exists, 503
// otherwise) and answers every TCP connection on --ip:--port with the VM id.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	ip := flag.String("ip", "", "VM address")
	id := flag.String("id", "", "VM id")
	disk := flag.String("disk", "", "VM disk")
	gatePort := flag.Int("gate-port", 19444, "gate port")
	port := flag.Int("port", 16443, "backend port")
	flag.Parse()
	gl, err := net.Listen("tcp", net.JoinHostPort(*ip, strconv.Itoa(*gatePort)))
	if err != nil {
		log.Fatal(err)
	}
	gate := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(filepath.Join(*disk, "gate-open")); err != nil {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	gate.Listener = gl
	gate.StartTLS()
	l, err := net.Listen("tcp", net.JoinHostPort(*ip, strconv.Itoa(*port)))
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		c.Write([]byte(*id))
		c.Close()
	}
}
