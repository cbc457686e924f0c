package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles names the PEM files of one side of a mutual-TLS connection.
type TLSFiles struct {
	// CertFile and KeyFile are this side's certificate and key.
	CertFile string
	KeyFile  string
	// CAFile is triad's CA, which must have signed the other side.
	CAFile string
}

// ServerTLSConfig is the agent's TLS configuration: TLS 1.3 only, and a client
// certificate signed by triad's CA is required. There is no plaintext mode.
func ServerTLSConfig(files TLSFiles) (*tls.Config, error) {
	cert, pool, err := files.load()
	if err != nil {
		return nil, fmt.Errorf("loading agent TLS material: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientTLSConfig is the configuration of a coordinator or observer talking
// to the agents of cluster: TLS 1.3 only, the agent must present a
// certificate for AgentServerName(cluster) signed by triad's CA.
func ClientTLSConfig(files TLSFiles, cluster string) (*tls.Config, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return nil, err
	}
	cert, pool, err := files.load()
	if err != nil {
		return nil, fmt.Errorf("loading client TLS material: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   AgentServerName(cluster),
	}, nil
}

func (f TLSFiles) load() (tls.Certificate, *x509.CertPool, error) {
	if f.CertFile == "" || f.KeyFile == "" || f.CAFile == "" {
		return tls.Certificate{}, nil, fmt.Errorf("certificate, key and CA files are all required (got cert=%q key=%q ca=%q)", f.CertFile, f.KeyFile, f.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("reading key pair %s / %s: %w", f.CertFile, f.KeyFile, err)
	}
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, fmt.Errorf("CA file %s holds no PEM certificate", f.CAFile)
	}
	return cert, pool, nil
}
