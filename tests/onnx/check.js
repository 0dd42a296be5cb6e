// Runs every model of DIR/cases.txt (written by onnx_cases) in ONNX Runtime and compares its
// outputs with libkd's: |ort - kd| <= 1e-5 * max(1, |kd|) for every value.
// usage: node check.js DIR   (onnxruntime-node found through NODE_PATH or node_modules)
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function floats(file) {
    const b = fs.readFileSync(file);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

async function main() {
    const dir = process.argv[2];
    const lines = fs.readFileSync(path.join(dir, 'cases.txt'), 'utf8').trim().split('\n');
    let bad = 0;
    for (const line of lines) {
        const f = line.split(' ');
        const name = f[0], dims = f.slice(1, -1).map(Number), count = Number(f[f.length - 1]);
        const session = await ort.InferenceSession.create(path.join(dir, name + '.onnx'));
        const x = new ort.Tensor('float32', floats(path.join(dir, name + '.in')), dims);
        const y = (await session.run({input: x})).logits.data;
        const want = floats(path.join(dir, name + '.out'));
        let worst = 0;
        if (y.length !== count || want.length !== count) {
            console.log(`${name}: ONNX Runtime gave ${y.length} values, libkd ${want.length}`);
            bad++;
            continue;
        }
        for (let i = 0; i < count; i++) {
            const err = Math.abs(y[i] - want[i]) / Math.max(1, Math.abs(want[i]));
            if (!(err <= worst)) worst = err; // NaN counts as the worst
        }
        const ok = worst <= 1e-5;
        console.log(`${name}: ${count} outputs, largest error ${worst.toExponential(2)} ${ok ? 'ok' : 'FAIL'}`);
        if (!ok) bad++;
    }
    process.exit(bad ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
