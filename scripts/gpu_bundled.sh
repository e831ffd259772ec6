#!/usr/bin/env bash
# Train the bundled models on a lent GPU in one call: a short probe measures the step rate of the
# three diffusion trainings running side by side, then each trains for TRAIN_SECONDS.
set -u
TRAIN_SECONDS=${TRAIN_SECONDS:-390}
BATCH=${BATCH:-128}
PROBE=${PROBE:-150}
MIN_STEPS=${MIN_STEPS:-1000}
EPOCHS=${EPOCHS:-15}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total --format=csv
W=/tmp/work; mkdir -p $W
# Probe: PROBE steps each, concurrently.
t0=$(date +%s.%N)
for k in isotropic gff edge; do
  python3 scripts/train_bundled.py $k $W/probe-$k --root .data --steps $PROBE --batch-size $BATCH --checkpoint-every 100000 > $W/probe-$k.log 2>&1 &
done
wait
t1=$(date +%s.%N)
tail -n 1 $W/probe-*.log
# seconds per step from the probes' own timings (excludes start-up)
STEPS=$(python3 - <<PY
import json,glob
secs=max(json.load(open(f))["seconds"] for f in glob.glob("$W/probe-*/run.json"))
print(max($MIN_STEPS, int($TRAIN_SECONDS / (secs / $PROBE) // 100 * 100)))
PY
)
echo "probe wall $(python3 -c "print($t1-$t0)") s; training $STEPS steps each"
python3 scripts/train_bundled.py classifier $W/classifier --root .data --epochs $EPOCHS > $W/classifier.log 2>&1 &
for k in isotropic gff edge; do
  python3 scripts/train_bundled.py $k $W/$k --root .data --steps $STEPS --batch-size $BATCH --warmup 500 --ema-decay 0.9995 --checkpoint-every 5000 --sample-every $STEPS > $W/$k.log 2>&1 &
done
wait
tail -n 2 $W/*.log
for k in isotropic gff edge; do
  mkdir -p $W/pack/$k && cp $W/$k/model/* $W/$k/run.json $W/$k/train_log.json $W/$k/samples/*.png $W/pack/$k/ 2>/dev/null
  tar -C $W/pack -czf $OUT/$k.tgz $k
done
tar -C $W -czf $OUT/classifier.tgz classifier classifier.log
tar -C $W -czf $OUT/logs.tgz isotropic.log gff.log edge.log probe-isotropic.log
ls -la $OUT
