// Command otelcol is a minimal OpenTelemetry Collector for the agent tests:
// the real OTLP receiver feeding a "profilesfile" exporter that appends each
// profiles batch it gets as one line of OTLP JSON to the file named by its
// `path:` setting (or, with `format: text`, as lines of text: textBatch).
// Tests read that file to see what the collector received.
//
// Build: scripts/build_otelcol.sh. Run:
//
//	otelcol --config file:/path/config.yaml --feature-gates=service.profilesSupport
//
// config.yaml:
//
//	receivers:
//	  otlp:
//	    protocols:
//	      http:
//	        endpoint: 127.0.0.1:PORT   # profiles at POST /v1development/profiles
//	exporters:
//	  profilesfile:
//	    path: /tmp/out.jsonl
//	service:
//	  telemetry:                       # optional
//	    logs:
//	      level: info                  # to stderr
//	  pipelines:
//	    profiles:
//	      receivers: [otlp]
//	      exporters: [profilesfile]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/xexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

var fileType = component.MustNewType("profilesfile")

type fileConfig struct {
	Path string `mapstructure:"path"`
	// "json" (default): each batch as one line of OTLP JSON. "text": each
	// batch as lines a C++ test compares without a JSON parser (textBatch).
	Format string `mapstructure:"format"`
}

func (c *fileConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path must be set")
	}
	if c.Format != "" && c.Format != "json" && c.Format != "text" {
		return fmt.Errorf("format must be json or text, not %q", c.Format)
	}
	return nil
}

// fileExporter writes each batch with a single write(2) on an O_APPEND file,
// so a reader never sees a partial line once the newline is there.
type fileExporter struct {
	path string
	text bool
	mu   sync.Mutex
	f    *os.File
}

func (e *fileExporter) Start(context.Context, component.Host) error {
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	e.f = f
	return nil
}

func (e *fileExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := e.f.Close()
	e.f = nil
	return err
}

func (e *fileExporter) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (e *fileExporter) ConsumeProfiles(_ context.Context, pd pprofile.Profiles) error {
	var line []byte
	if e.text {
		line = textBatch(pd)
	} else {
		var err error
		if line, err = (&pprofile.JSONMarshaler{}).MarshalProfiles(pd); err != nil {
			return err
		}
		line = append(line, '\n')
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return errors.New("profilesfile: not started")
	}
	n, err := e.f.Write(line)
	if err == nil && n != len(line) {
		err = fmt.Errorf("profilesfile: short write %d of %d bytes", n, len(line))
	}
	return err
}

func newFileExporterFactory() exporter.Factory {
	return xexporter.NewFactory(fileType,
		func() component.Config { return &fileConfig{} },
		xexporter.WithProfiles(func(_ context.Context, _ exporter.Settings, cfg component.Config) (xexporter.Profiles, error) {
			c := cfg.(*fileConfig)
			return &fileExporter{path: c.Path, text: c.Format == "text"}, nil
		}, component.StabilityLevelDevelopment))
}

// textBatch renders a batch as tab-separated lines, resolved through the
// dictionary the receiver decoded:
//
//	batch	<resource attributes k=v, sorted, comma-separated>	<scope name>/<scope version>
//	sample	<type>/<unit>	<value>	<frames, leaf first, ';'-separated>	<attributes k=v, sorted, tab-separated>
//	end
//
// A location's lines (inlined frames first) each give a frame, its
// function's name; a location without lines gives 0x<address>.
func textBatch(pd pprofile.Profiles) []byte {
	dict := pd.Dictionary()
	strs := dict.StringTable()
	str := func(i int32) string {
		if i < 0 || int(i) >= strs.Len() {
			return fmt.Sprintf("<bad string %d>", i)
		}
		return strs.At(int(i))
	}
	var b strings.Builder
	rps := pd.ResourceProfiles()
	for i := 0; i < rps.Len(); i++ {
		rp := rps.At(i)
		var res []string
		rp.Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
			res = append(res, k+"="+v.AsString())
			return true
		})
		sort.Strings(res)
		sps := rp.ScopeProfiles()
		for j := 0; j < sps.Len(); j++ {
			sp := sps.At(j)
			fmt.Fprintf(&b, "batch\t%s\t%s/%s\n", strings.Join(res, ","), sp.Scope().Name(), sp.Scope().Version())
			ps := sp.Profiles()
			for k := 0; k < ps.Len(); k++ {
				p := ps.At(k)
				st := p.SampleType()
				kind := str(st.TypeStrindex()) + "/" + str(st.UnitStrindex())
				for n := 0; n < p.Samples().Len(); n++ {
					s := p.Samples().At(n)
					var frames []string
					stacks := dict.StackTable()
					if idx := int(s.StackIndex()); idx >= 0 && idx < stacks.Len() {
						locs := stacks.At(idx).LocationIndices()
						for l := 0; l < locs.Len(); l++ {
							li := int(locs.At(l))
							if li < 0 || li >= dict.LocationTable().Len() {
								frames = append(frames, fmt.Sprintf("<bad location %d>", li))
								continue
							}
							loc := dict.LocationTable().At(li)
							if loc.Lines().Len() == 0 {
								frames = append(frames, fmt.Sprintf("0x%x", loc.Address()))
							}
							for m := 0; m < loc.Lines().Len(); m++ {
								fi := int(loc.Lines().At(m).FunctionIndex())
								if fi < 0 || fi >= dict.FunctionTable().Len() {
									frames = append(frames, fmt.Sprintf("<bad function %d>", fi))
									continue
								}
								frames = append(frames, str(dict.FunctionTable().At(fi).NameStrindex()))
							}
						}
					}
					var attrs []string
					for a := 0; a < s.AttributeIndices().Len(); a++ {
						ai := int(s.AttributeIndices().At(a))
						if ai < 0 || ai >= dict.AttributeTable().Len() {
							attrs = append(attrs, fmt.Sprintf("<bad attribute %d>", ai))
							continue
						}
						kv := dict.AttributeTable().At(ai)
						attrs = append(attrs, str(kv.KeyStrindex())+"="+kv.Value().AsString())
					}
					sort.Strings(attrs)
					var total int64
					for v := 0; v < s.Values().Len(); v++ {
						total += s.Values().At(v)
					}
					fmt.Fprintf(&b, "sample\t%s\t%d\t%s\t%s\n", kind, total, strings.Join(frames, ";"), strings.Join(attrs, "\t"))
				}
			}
		}
	}
	b.WriteString("end\n")
	return []byte(b.String())
}

// telemetryConfig is the service::telemetry section. The collector's own
// metrics and traces are no-ops: the stock otelconftelemetry factory serves
// metrics on a fixed port (:8888) by default, and it links AWS and Kubernetes
// resource detectors that double the build.
type telemetryConfig struct {
	Logs struct {
		Level zapcore.Level `mapstructure:"level"`
	} `mapstructure:"logs"`
}

func newTelemetryFactory() telemetry.Factory {
	return telemetry.NewFactory(
		func() component.Config { return &telemetryConfig{} }, // zero Level is info
		telemetry.WithCreateLogger(func(_ context.Context, set telemetry.LoggerSettings, cfg component.Config) (*zap.Logger, component.ShutdownFunc, error) {
			zc := zap.NewDevelopmentConfig() // console lines on stderr
			zc.Level = zap.NewAtomicLevelAt(cfg.(*telemetryConfig).Logs.Level)
			zc.DisableStacktrace = true
			build := set.BuildZapLogger
			if build == nil {
				build = func(c zap.Config, opts ...zap.Option) (*zap.Logger, error) { return c.Build(opts...) }
			}
			logger, err := build(zc)
			if err != nil {
				return nil, nil, err
			}
			return logger, func(context.Context) error { _ = logger.Sync(); return nil }, nil
		}))
}

func components() (otelcol.Factories, error) {
	receivers, err := otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	exporters, err := otelcol.MakeFactoryMap[exporter.Factory](newFileExporterFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	return otelcol.Factories{
		Receivers: receivers,
		Exporters: exporters,
		Telemetry: newTelemetryFactory(),
	}, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol",
			Description: "goerrprof test collector (OTLP in, profiles JSON lines out)",
			Version:     "0.165.0",
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				// --config sets DefaultScheme "env", which must have a provider.
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1)
	}
}
