# Convoy — the two commands a new machine needs are `make run` and `make test`.
SWIFT ?= swift
# Extra flags for every swift invocation, e.g. SWIFT_FLAGS="--scratch-path .build-ci".
SWIFT_FLAGS ?=
# Release builds (bench, chaos, sim, and what deploy/README.md installs) link the Swift runtime and
# Foundation statically: workers run the dispatcher's own binary without a Swift toolchain, and a
# runner's process starts in 17 ms instead of 25 (docs/benchmarks.md).
RELEASE ?= -c release --static-swift-stdlib

.PHONY: bench-cost all deps build test run bench chaos fuzz sim doctor stop clean

all: build

## deps: install every Debian package Convoy needs (only what is missing)
deps:
	@bash scripts/deps.sh

## build: build the convoy binary (debug)
build: deps
	$(SWIFT) build $(SWIFT_FLAGS) --product convoy

## test: build and run the whole test suite against real PostgreSQL, sshd and HTTP servers
test: deps
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build

## run: the local cluster on loopback (PostgreSQL, convoy api over HTTPS, three dispatchers, loopback
## instances), a demo workload and a live view; Ctrl-C stops all of it. State in ./.convoy-dev (or CONVOY_DEV_DIR).
run: build
	@"$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/convoy" dev run

## bench: the benchmarks recorded in docs/benchmarks.md (release build; not part of make test)
bench: deps
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product convoy
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product ConvoyBench
	cc -shared -fPIC -O2 -o .build/malloc_counter.so Benchmarks/malloc-counter/malloc_counter.c
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyBench" --skip-scheduler
	LD_PRELOAD="$(CURDIR)/.build/malloc_counter.so" "$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyBench" \
	  --skip-ssh --skip-postgres --skip-api --skip-runner --skip-cluster --skip-dispatcher
	$(MAKE) bench-cost

## bench-cost: the simulation's seeded workload of BENCH_SIM_CONTAINERS mixed containers on up to BENCH_SIM_INSTANCES
## instances, without faults, run twice: packing with the price factor (production's settings) and one
## container per instance of its cheapest type; instance-hours, cost and submission-to-Running p50/p99 of each
BENCH_SIM_INSTANCES ?= 10000
BENCH_SIM_CONTAINERS ?= 100000
bench-cost: deps
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product convoy-sim
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/convoy-sim" --profile large --seed 7 --no-faults \
	  --instances $(BENCH_SIM_INSTANCES) --containers $(BENCH_SIM_CONTAINERS)
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/convoy-sim" --profile large --seed 7 --no-faults --one-per-instance \
	  --instances $(BENCH_SIM_INSTANCES) --containers $(BENCH_SIM_CONTAINERS)

## fuzz: the replicas' TCP protocol (frames, messages, handshakes) under libFuzzer for FUZZ_SECONDS
## (its own build in .build/fuzz; a failing input stops it, saved in .build/fuzz-artifacts/;
## FUZZ_KEEP=1 merges the inputs with new coverage into Fuzz/corpus/wire, which make test replays)
FUZZ_SECONDS ?= 300
FUZZ_KEEP ?= 0
fuzz: deps
	SWIFT="$(SWIFT)" SWIFT_FLAGS="$(SWIFT_FLAGS)" FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_KEEP=$(FUZZ_KEEP) bash scripts/fuzz.sh

## chaos: the HA proofs at full scale (long; release build; results in docs/reliability.md): the wire
## protocol fuzzed for FUZZ_SECONDS, then CHAOS_CONTAINERS sleep containers Running while every replica is
## restarted twice by deploy/rolling-restart.sh, then CHAOS_FAULT_CONTAINERS short containers while faults
## are injected for CHAOS_SECONDS on CHAOS_DRIVER's instances (the shared stub cloud; CHAOS_SEED replays a run)
CHAOS_CONTAINERS ?= 200
CHAOS_FAULT_CONTAINERS ?= 5000
CHAOS_DRIVER ?= stub
CHAOS_MAX_INSTANCES ?= 100
CHAOS_SECONDS ?= 600
CHAOS_SEED ?=
## ... then the scale proof twice on the stub cloud (without faults, then with a leader kill and a
## step-down): CHAOS_SCALE_CONTAINERS sleep containers of CHAOS_SCALE_SLEEP_MIN–MAX s, at most
## CHAOS_SCALE_MAX_INSTANCES at once; every one must complete exactly once, nothing killed
CHAOS_SCALE_CONTAINERS ?= 3000
CHAOS_SCALE_SLEEP_MIN ?= 240
CHAOS_SCALE_SLEEP_MAX ?= 600
CHAOS_SCALE_MAX_INSTANCES ?= 1500
chaos: deps fuzz
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product convoy
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product ConvoyChaosTool
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyChaosTool" rolling-restart \
	  --containers $(CHAOS_CONTAINERS) --rounds 2 --output .build/chaos-rolling-restart.json
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyChaosTool" faults --driver $(CHAOS_DRIVER) --max-instances $(CHAOS_MAX_INSTANCES) \
	  --containers $(CHAOS_FAULT_CONTAINERS) --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) --output .build/chaos-faults.json
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyChaosTool" scale --driver stub --containers $(CHAOS_SCALE_CONTAINERS) \
	  --sleep-min $(CHAOS_SCALE_SLEEP_MIN) --sleep-max $(CHAOS_SCALE_SLEEP_MAX) --max-instances $(CHAOS_SCALE_MAX_INSTANCES) \
	  $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) --output .build/chaos-scale.json
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/ConvoyChaosTool" scale --driver stub --containers $(CHAOS_SCALE_CONTAINERS) \
	  --sleep-min $(CHAOS_SCALE_SLEEP_MIN) --sleep-max $(CHAOS_SCALE_SLEEP_MAX) --max-instances $(CHAOS_SCALE_MAX_INSTANCES) \
	  --leader-faults $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) --output .build/chaos-scale-leader-faults.json

## sim: the dispatcher's core in deterministic simulation (release build). SIM_SEED replays one seed;
## otherwise SIM_SEEDS random seeds (SIM_FIRST_SEED to start from one). SIM_PROFILE=large is the big
## cluster: SIM_INSTANCES instances, SIM_CONTAINERS containers submitted over SIM_WINDOW seconds.
## A failing seed prints its replay command and is appended to .build/sim-failures.txt; keep it in
## Simulation/kept-seeds.txt once fixed.
SIM_PROFILE ?= small
SIM_SEEDS ?= 1000
SIM_SEED ?=
SIM_FIRST_SEED ?=
SIM_INSTANCES ?= 10000
SIM_CONTAINERS ?= 100000
SIM_WINDOW ?= 600
sim: deps
	$(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --product convoy-sim
	"$$($(SWIFT) build $(SWIFT_FLAGS) $(RELEASE) --show-bin-path)/convoy-sim" --profile $(SIM_PROFILE) --seeds $(SIM_SEEDS) \
	  $(if $(SIM_SEED),--seed $(SIM_SEED)) $(if $(SIM_FIRST_SEED),--first-seed $(SIM_FIRST_SEED)) \
	  --instances $(SIM_INSTANCES) --containers $(SIM_CONTAINERS) --submit-window $(SIM_WINDOW) --failures-file .build/sim-failures.txt

## doctor: check this machine
doctor: build
	"$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/convoy" doctor

## stop: stop everything `make run` (or `convoy dev up`) started
stop:
	@convoy="$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/convoy"; \
	  if [ -x "$$convoy" ]; then "$$convoy" dev down; else echo "no convoy binary built: nothing of make run can be running"; fi

clean:
	rm -rf .build .convoy-dev
