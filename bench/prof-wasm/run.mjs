// Runs bench-prof.wasm (wasm32-wasip1) under Node's WASI from the repository root:
//   node --no-liftoff bench/prof-wasm/run.mjs <file.wasm> [bench-prof arguments]
// `--no-liftoff` is what Envoy sets (proxy-wasm-cpp-host src/v8/v8.cc: "force optimized JIT
// up-front"): every function is compiled by TurboFan, none by the baseline compiler. The policy crates
// link the proxy-wasm SDK, whose exported callbacks import the host ABI: those imports are stubs here
// (the fake host in the program is what runs).
import { WASI } from 'node:wasi';
import { readFileSync } from 'node:fs';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: ['bench-prof', ...args], env: {}, preopens: { '.': '.' }, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(file));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== 'wasi_snapshot_preview1') {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] ??= () => { throw new Error(`host call ${imp.module}.${imp.name} in bench-prof`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
process.exitCode = wasi.start(instance);
