#!/usr/bin/env python3
"""Where a bench arm's time goes, counted in instructions per request (`make bench-profile`).

Runs `bench-prof` (tests/src/bin/bench-prof.rs: the bench's requests through the real driver and
policies on the fake Envoy host, natively) under callgrind for each arm and workload, collecting only
inside its measured loop, and splits each total by the inclusive cost of the functions that do one
kind of work. Instruction counts do not depend on what else the machine runs, unlike timings.

    profile_split.py --bin target/prof-native/release/bench-prof [--arms a,b] [--workloads 1k,64k]

Standard library only. Needs valgrind (callgrind and callgrind_annotate).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ABI = r'^<shared::host::fake::FakeHost as shared::host::abi::Abi>::'
# (row, patterns over function names). The rows do not overlap: no listed function calls another.
CATEGORIES = [
    ('JSON parse (the request once, answers)',
     [r'^shared::host::body::Body::parse$', r'^serde_json::de::from_trait$']),
    ('re-serialisation',
     [r'^serde_json::value::ser::<impl serde_core::ser::Serialize for serde_json::value::Value>::serialize$']),
    ('header and property calls',
     [ABI + r'(header|headers|set_header|remove_header|property|set_property|send_response)$']),
    ('metrics (names and calls)', [r'^shared::metrics::name$', ABI + r'(counter_add|histogram_record)$']),
    ('shared data', [ABI + r'(shared_data|set_shared_data)$']),
    ('logging', [ABI + r'log$']),
]
# Shown under the split, not subtracted (they overlap the rows above).
EXTRA = [
    ('of which format!', r'^alloc::fmt::format::format_inner$'),
    ('of which memcpy (body copies)', r'^__memcpy_avx_unaligned_erms$|^__memmove_avx_unaligned_erms$'),
    ('of which malloc/free', r'^(malloc|free|realloc|_int_malloc|_int_free)$'),
]
ITERS = {'1k': 40, '64k': 8, 'sse': 20}


def inclusive(out_file):
    """Function name -> inclusive instructions, from callgrind_annotate."""
    text = subprocess.run(['callgrind_annotate', '--inclusive=yes', '--threshold=100', out_file],
                          capture_output=True, text=True, check=True).stdout
    cost = {}
    for line in text.splitlines():
        # `N (pct) file:function [object]`: one function can have several rows (its code inlined from
        # other files); the largest is the whole function.
        m = re.match(r'\s*([\d,]+)\s+\([^)]*\)\s+[^:]*:(.*?)(?: \[[^\]]*\])?$', line)
        if m:
            name, n = m.group(2), int(m.group(1).replace(',', ''))
            cost[name] = max(cost.get(name, 0), n)
    return cost


def profile(binary, arm, workload, iters):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'callgrind.out')
        subprocess.run(['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
                        '--toggle-collect=*bench_prof*measured*', binary, '--arm', arm,
                        '--workload', workload, '--iters', str(iters)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        cost = inclusive(out)
    total = cost.get('bench_prof::measured', 0)
    rows, used = [], 0
    for name, pats in CATEGORIES:
        c = sum(v for fn, v in cost.items() if any(re.search(p, fn) for p in pats))
        used += c
        rows.append((name, c))
    rows.append(('policy work and the rest', total - used))
    rows += [(name, sum(v for fn, v in cost.items() if re.search(p, fn))) for name, p in EXTRA]
    return total / iters, [(name, c / iters, c / max(total, 1)) for name, c in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bin', required=True)
    ap.add_argument('--arms', default='none,ai-prompt-guard,ai-pii-redact,ai-token-ratelimit,ai-proxy,chain,bundle')
    ap.add_argument('--workloads', default='1k,64k')
    a = ap.parse_args()
    arms = a.arms.split(',')
    for w in a.workloads.split(','):
        results = [profile(a.bin, arm, w, ITERS.get(w, 20)) for arm in arms]
        print(f'\n{w}: thousand instructions per request (share of the arm\'s total)\n')
        print('| | ' + ' | '.join(arms) + ' |')
        print('|---|' + '---:|' * len(arms))
        print('| **total** | ' + ' | '.join(f'**{t / 1000:,.0f}**' for t, _ in results) + ' |')
        for i, (name, _, _) in enumerate(results[0][1]):
            cells = [f'{rows[i][1] / 1000:,.1f} ({100 * rows[i][2]:.0f}%)' for _, rows in results]
            print(f'| {name} | ' + ' | '.join(cells) + ' |')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
