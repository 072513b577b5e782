// Download over simulated long-distance links: one connection against N parallel ranged ones.
// This machine's kernel has no sch_netem, so the links are built inside the QEMU guest of
// scripts/vm (Debian 12's kernel): two network namespaces joined by a veth pair, `tc netem` on
// each end adding half the round-trip time and, on the server's side (the data's direction), the
// link's rate and an optional random loss. TCP itself, with the guest kernel's default buffers and
// congestion control (cubic), decides what one connection gets out of a link. Times are of the
// transfer alone: curl's own -w time, wall time around the parallel curls, in-process for byoi
// (Node's start under TCG takes seconds). Every download is checked against the file's sha256.
//
// The guest runs under TCG: its CPU, not the link, is the bottleneck above a few MB/s (see
// `--link 0,none,0`), so the links' rates stay well below that.
//
//   npx node scripts/bench/long-link.ts [--link RTT_MS,RATE,LOSS_PERCENT]... [--size MiB]
//       [--runs 3] [--conns 4,8] [--rmem BYTES]
//   e.g. --link 100,10mbit,0 --link 100,10mbit,0.1   (RATE "none": unlimited; 0,none,0: no netem)
import { parseArgs } from 'node:util';
import { runInVm } from '../vm/run.ts';
import { median } from './measure.ts';

const { values } = parseArgs({
  options: {
    link: { type: 'string', multiple: true, default: ['100,10mbit,0', '100,10mbit,0.1'] },
    size: { type: 'string', default: '16' },
    runs: { type: 'string', default: '3' },
    conns: { type: 'string', default: '4' },
    // The client's largest TCP receive buffer (net.ipv4.tcp_rmem's max), in bytes; default the kernel's.
    rmem: { type: 'string' },
  },
});
const sizeMiB = Number(values.size);
const conns = values.conns!.split(',').map(Number);
const links = values.link!.map((text) => {
  const [rtt, rate, loss] = text.split(',');
  return { rttMs: Number(rtt), rate: rate!, lossPercent: Number(loss ?? 0) };
});

/** The tc commands that turn the veth pair into `link` (replacing the previous link's). */
function shape({ rttMs, rate, lossPercent }: (typeof links)[number]): string {
  const limit = rate === 'none' ? '' : `rate ${rate}`;
  const loss = lossPercent > 0 ? `loss ${lossPercent}%` : '';
  return [
    'tc -n srv qdisc del dev veth0 root 2>/dev/null || true',
    'tc -n cli qdisc del dev veth1 root 2>/dev/null || true',
    ...(rttMs > 0 || limit || loss
      ? [
          `tc -n srv qdisc add dev veth0 root netem delay ${rttMs / 2}ms ${limit} ${loss} limit 10000`,
          `tc -n cli qdisc add dev veth1 root netem delay ${rttMs / 2}ms limit 10000`,
        ]
      : []),
  ].join('\n');
}

const script = `
set -euo pipefail
ip netns add srv
ip netns add cli
ip link add veth0 netns srv type veth peer name veth1 netns cli
# One TCP segment per packet, as on a wire: netem then delays and drops packets, not 64 KiB bursts.
for end in "srv veth0 10.9.0.1" "cli veth1 10.9.0.2"; do
  set -- $end
  ip -n $1 link set lo up
  ip -n $1 link set $2 gso_max_segs 1 gso_max_size 1500 up
  ip -n $1 addr add $3/24 dev $2
done
${values.rmem ? `ip netns exec cli sysctl -qw net.ipv4.tcp_rmem="4096 ${Math.min(131072, Number(values.rmem))} ${values.rmem}"` : ''}
ip netns exec cli sysctl net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.ipv4.tcp_congestion_control net.ipv4.tcp_adv_win_scale | tr '\\t' ' '

head -c ${sizeMiB}M /dev/urandom >/tmp/image
bytes=$(stat -c %s /tmp/image)
expected=$(sha256sum /tmp/image | cut -c1-64)
ip netns exec srv node /byoi/scripts/bench/range-server.ts /tmp/image 10.9.0.1 8080 >/tmp/server.log 2>&1 &
for ((i = 0; i < 120; i++)); do grep -q listening /tmp/server.log && break; sleep 0.5; done
grep -q listening /tmp/server.log || { echo "the server did not start:"; cat /tmp/server.log; exit 1; }
url=http://10.9.0.1:8080/image

curl_one() {
  local seconds
  seconds=$(ip netns exec cli curl -sSf -o /tmp/whole -w '%{time_total}' "$url")
  [ "$(sha256sum </tmp/whole | cut -c1-64)" = "$expected" ] || { echo "curl: wrong sha256"; exit 1; }
  rm /tmp/whole
  echo "RESULT $link curl-1 $seconds"
}
curl_ranges() {
  local n=$1 part start end t0 t1 i pids=()
  part=$(( (bytes + n - 1) / n ))
  t0=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    start=$((i * part)); end=$((start + part - 1)); ((end < bytes)) || end=$((bytes - 1))
    ip netns exec cli curl -sSf -r $start-$end -o /tmp/part.$i "$url" &
    pids+=($!)
  done
  wait "\${pids[@]}"
  t1=$(date +%s.%N)
  [ "$(for ((i = 0; i < n; i++)); do cat /tmp/part.$i; done | sha256sum | cut -c1-64)" = "$expected" ] || { echo "curl ranges: wrong sha256"; exit 1; }
  rm /tmp/part.*
  echo "RESULT $link curl-$n $(awk "BEGIN { print $t1 - $t0 }")"
}
byoi_one() {
  local out
  out=$(ip netns exec cli node /byoi/scripts/bench/long-link-client.ts "$url" "$@" 2>/dev/null)
  [ "\${out#* }" = "$expected" ] || { echo "byoi: wrong sha256: $out"; exit 1; }
  echo "RESULT $link byoi-\${1:-1} \${out%% *}"
}
${links
  .map(
    (link, i) => `
link=${i}
${shape(link)}
ip netns exec cli curl -sS -o /dev/null -w 'link ${i}: connected in %{time_connect} s\\n' "$url" -r 0-0
for ((run = 1; run <= ${Number(values.runs)}; run++)); do
  curl_one
  byoi_one
  for n in ${conns.join(' ')}; do curl_ranges $n; byoi_one $n; done
done`,
  )
  .join('\n')}
`;

const megabytes = (sizeMiB * 1024 * 1024) / 1e6;
const started = Date.now();
const result = await runInVm({
  script,
  memoryMiB: 2048,
  cpus: 2,
  timeoutSeconds: 3600,
  // The guest's console as it comes, on stderr: a run takes minutes.
  onConsole: (text) => process.stderr.write(text),
});
const samples = new Map<string, number[]>();
for (const line of result.output.split('\n')) {
  const match = /^RESULT (\d+) (\S+) ([\d.]+)$/.exec(line.trim());
  if (match)
    samples.set(`${match[1]} ${match[2]}`, [...(samples.get(`${match[1]} ${match[2]}`) ?? []), Number(match[3])]);
  else if (line.trim()) console.log(`# ${line.trim()}`);
}
if (result.exitCode !== 0) throw new Error(`the guest script failed (${result.exitCode})`);
console.log(
  `${sizeMiB} MiB over each link, medians of ${values.runs} interleaved runs, client's tcp_rmem max ${values.rmem ?? "the kernel's"}, ${Math.round((Date.now() - started) / 1000)} s in all`,
);
console.log('| link: RTT, rate, loss | client | connections | seconds (runs) | MB/s |');
console.log('|---|---|---|---|---|');
for (const [key, times] of samples) {
  const [index, name] = key.split(' ') as [string, string];
  const { rttMs, rate, lossPercent } = links[Number(index)]!;
  const [tool, n] = name.split('-');
  console.log(
    `| ${rttMs} ms, ${rate}, ${lossPercent}% | ${tool} | ${n} | ${median(times).toFixed(1)} (${times.map((t) => t.toFixed(1)).join(', ')}) | ${(megabytes / median(times)).toFixed(2)} |`,
  );
}
