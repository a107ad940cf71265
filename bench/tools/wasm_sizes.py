#!/usr/bin/env python3
"""What the bytes of a .wasm are: section sizes, code size per crate, the largest functions and the
generic functions instantiated more than once.

Reads the module's `name` section, so build without stripping:

    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --target wasm32-wasip1 \\
      --target-dir target/size -p ai-pii-redact
    python3 bench/tools/wasm_sizes.py target/size/wasm32-wasip1/release/ai_pii_redact.wasm [--top 30]

A function is counted under the first crate its (mangled) name names, so a generic instantiated for
another crate's type counts under the generic's crate (`core`, `serde_core`). Standard library only.
"""
import argparse
import collections
import re

SECTIONS = {0: 'custom', 1: 'type', 2: 'import', 3: 'function', 4: 'table', 5: 'memory', 6: 'global',
            7: 'export', 8: 'start', 9: 'element', 10: 'code', 11: 'data', 12: 'data count'}


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7f) << s
        s += 7
        if x < 0x80:
            return r, i


def skip_limits(b, j):
    flags = b[j]
    _, j = leb(b, j + 1)
    return leb(b, j)[1] if flags & 1 else j


def read(path):
    b = open(path, 'rb').read()
    i, sections, names, imported, bodies = 8, [], {}, 0, []
    while i < len(b):
        sid = b[i]
        n, j = leb(b, i + 1)
        sections.append((sid, j, n))
        i = j + n
    for sid, off, n in sections:
        if sid == 0:
            nl, j = leb(b, off)
            if b[j:j + nl] == b'name':
                j += nl
                while j < off + n:
                    sub = b[j]
                    size, j = leb(b, j + 1)
                    end = j + size
                    if sub == 1:
                        count, j = leb(b, j)
                        for _ in range(count):
                            idx, j = leb(b, j)
                            ln, j = leb(b, j)
                            names[idx] = b[j:j + ln].decode('utf8', 'replace')
                            j += ln
                    j = end
        elif sid == 2:
            count, j = leb(b, off)
            for _ in range(count):
                for _ in range(2):
                    ln, j = leb(b, j)
                    j += ln
                kind = b[j]
                j += 1
                if kind == 0:
                    imported += 1
                    _, j = leb(b, j)
                elif kind == 1:
                    j = skip_limits(b, j + 1)
                elif kind == 2:
                    j = skip_limits(b, j)
                else:
                    j += 2
        elif sid == 10:
            count, j = leb(b, off)
            for k in range(count):
                size, body = leb(b, j)
                bodies.append((imported + k, size + body - j))
                j = body + size
    return b, sections, names, bodies


def crate_of(name):
    if name.startswith('_ZN'):
        m = re.match(r'_ZN(\d+)', name)
        if m:
            part = name[m.end():m.end() + int(m.group(1))]
            inner = re.match(r'_\$LT\$([A-Za-z_][A-Za-z0-9_]*)', part)
            return inner.group(1) if inner else part
    if name.startswith('_R'):
        m = re.search(r'Cs[0-9A-Za-z]*_(\d+)', name)
        if m:
            return name[m.end():m.end() + int(m.group(1))]
    return '(other)'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('wasm')
    ap.add_argument('--top', type=int, default=20)
    a = ap.parse_args()
    b, sections, names, bodies = read(a.wasm)
    print(f'{len(b):,} bytes')
    for sid, off, n in sections:
        label = SECTIONS.get(sid, str(sid))
        if sid == 0:
            nl, j = leb(b, off)
            label = 'custom ' + b[j:j + nl].decode('utf8', 'replace')
        print(f'  {n:>10,}  {label}')
    crates = collections.Counter()
    for idx, size in bodies:
        crates[crate_of(names.get(idx, ''))] += size
    total = sum(crates.values())
    print(f'\ncode by crate ({total:,} bytes)')
    for c, size in crates.most_common(25):
        print(f'  {size:>10,}  {100 * size / total:5.1f}%  {c}')
    for what in ('serde', 'regex', 'fmt'):
        size = sum(n for idx, n in bodies if what in names.get(idx, ''))
        print(f'  {size:>10,}  in functions whose name contains `{what}` (any crate)')
    print('\nlargest functions')
    for idx, size in sorted(bodies, key=lambda x: -x[1])[:a.top]:
        print(f'  {size:>10,}  {names.get(idx, f"#{idx}")[:140]}')
    # One generic function instantiated for several types: the same name but for its hash. The bytes
    # beyond its largest copy are what the other instantiations cost.
    copies = collections.defaultdict(list)
    for idx, size in bodies:
        copies[re.sub(r'17h[0-9a-f]{16}E$', '', names.get(idx, f'#{idx}'))].append(size)
    repeated = sorted(((sum(v) - max(v), len(v), n) for n, v in copies.items() if len(v) > 1), reverse=True)
    print(f'\nrepeated instantiations: {sum(r[0] for r in repeated):,} bytes beyond each one\'s largest copy')
    for extra, count, n in repeated[:a.top]:
        print(f'  {extra:>10,}  {count:>4}x  {n[:130]}')


if __name__ == '__main__':
    main()
