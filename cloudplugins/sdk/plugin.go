package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	cloudv1 "github.com/triad-k8s/triad/proto/triad/cloud/v1"
)

// Handshake is shared by triad and every plugin: a binary started without
// it (by hand, say) explains itself and exits instead of serving.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "TRIAD_CLOUD_PLUGIN",
	MagicCookieValue: "triad.cloud.v1",
}

// ConfigEnv carries the plugin's configuration (opaque bytes, usually
// JSON, from the cluster config) into the plugin process.
const ConfigEnv = "TRIAD_CLOUD_CONFIG"

const pluginName = "cloud"

// Config returns the configuration triad passed to this plugin process.
func Config() []byte { return []byte(os.Getenv(ConfigEnv)) }

type cloudPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Provider
}

func (p *cloudPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	cloudv1.RegisterCloudServiceServer(s, &grpcServer{p: p.impl})
	return nil
}

func (p *cloudPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClient{c: cloudv1.NewCloudServiceClient(conn)}, nil
}

// Serve serves impl to triad and blocks. Call it from the plugin's main.
// Log with Logger(): the JSON lines on stderr reach triad's log.
func Serve(impl Provider) {
	go exitWithParent(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{pluginName: &cloudPlugin{impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          pluginLogger(),
	})
}

// exitWithParent ends the plugin process once the triad that started it is
// gone. go-plugin stops a plugin when its host closes it, but a host killed
// with SIGKILL (or OOM) closes nothing, and the plugin, holding the cloud
// credentials of its environment, would serve on forever. An orphan is
// re-parented (to init or a subreaper), so a changed parent pid says the
// host died.
func exitWithParent(ppid int, every time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() != ppid {
			os.Exit(3)
		}
	}
}

func pluginLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", JSONFormat: true, Output: os.Stderr, Level: hclog.Info})
}

// Logger returns a slog logger for plugin code: JSON on stderr, which
// go-plugin parses on the host and triad re-logs with its own logger.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// OpenOptions configure how triad starts a plugin.
type OpenOptions struct {
	// Config is passed to the plugin in ConfigEnv.
	Config []byte
	// SHA256, if set, is the expected hex sha256 of the plugin binary;
	// go-plugin refuses to start a binary that does not match.
	SHA256 string
	// Env is added to the plugin's environment, which otherwise holds only
	// PATH, HOME, TMPDIR and XDG_* from triad's own.
	Env []string
	// Logger re-logs the plugin's logs; nil discards them.
	Logger *slog.Logger
}

// Plugin is a started plugin process.
type Plugin struct {
	Provider
	// Info is what the plugin said about itself at start.
	Info   PluginInfo
	client *plugin.Client
}

// Close stops the plugin process.
func (p *Plugin) Close() { p.client.Kill() }

// CheckControlPlane implements ControlPlaneChecker: through the wire, where
// a plugin without the method answers ErrUnimplemented.
func (p *Plugin) CheckControlPlane(ctx context.Context, req CheckControlPlaneRequest) ([]Check, error) {
	c, ok := p.Provider.(ControlPlaneChecker)
	if !ok {
		return nil, fmt.Errorf("%w: CheckControlPlane", ErrUnimplemented)
	}
	return c.CheckControlPlane(ctx, req)
}

// Open starts the plugin binary at path with go-plugin (gRPC, AutoMTLS,
// managed) and negotiates the API version with its first call. Any error
// after the process started kills it.
func Open(ctx context.Context, path string, opts OpenOptions) (*Plugin, error) {
	cmd := exec.Command(path)
	cmd.Env = pluginEnv(opts)
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &cloudPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		Logger:           hostLogger(opts.Logger),
	}
	if opts.SHA256 != "" {
		sum, err := hex.DecodeString(opts.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%w: plugin checksum %q is not a hex sha256", ErrInvalidArgument, opts.SHA256)
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	client := plugin.NewClient(cfg)
	p, err := dispense(ctx, client)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("starting cloud plugin %s: %w", path, err)
	}
	return p, nil
}

func dispense(ctx context.Context, client *plugin.Client) (*Plugin, error) {
	rpc, err := client.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		return nil, err
	}
	prov, ok := raw.(Provider)
	if !ok {
		return nil, fmt.Errorf("plugin dispensed %T, not a Provider", raw)
	}
	info, err := prov.PluginInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("first call (plugin info): %w", err)
	}
	if !slices.Contains(info.APIVersions, APIVersion) {
		return nil, fmt.Errorf("plugin %q speaks API versions %v; triad needs %s", info.Name, info.APIVersions, APIVersion)
	}
	return &Plugin{Provider: prov, Info: info, client: client}, nil
}

func pluginEnv(opts OpenOptions) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || k == "TMPDIR" || strings.HasPrefix(k, "XDG_") {
			env = append(env, kv)
		}
	}
	env = append(env, opts.Env...)
	return append(env, ConfigEnv+"="+string(opts.Config))
}

// hostLogger turns go-plugin's hclog output (including the plugin's own
// JSON logs, which go-plugin parses) into slog records.
func hostLogger(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "cloud-plugin", Output: io.Discard, Level: hclog.Info})
	if l != nil {
		il.RegisterSink(slogSink{l})
	}
	return il
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	lvl := slog.LevelInfo
	switch {
	case level >= hclog.Error:
		lvl = slog.LevelError
	case level == hclog.Warn:
		lvl = slog.LevelWarn
	case level <= hclog.Debug:
		lvl = slog.LevelDebug
	}
	// go-plugin's sink API carries no context; these records belong to no
	// request.
	s.l.Log(context.Background(), lvl, msg, append([]any{"logger", name}, args...)...)
}
