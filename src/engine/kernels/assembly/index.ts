// AssemblyScript: the training kernels that tfjs-backend-wasm lacks or runs
// slowly, as 128-bit SIMD loops over its own heap. The module imports the
// backend's WebAssembly.Memory (src/engine/kernels/simd.ts), so every pointer
// below is a tensor's offset in that heap: nothing is copied in or out.
//
// Built by scripts/buildKernels.mjs with --runtime stub --importMemory and no
// data segments: the module never allocates and never writes anywhere but
// the buffers it is handed.
//
// Layouts are NHWC, channels innermost; "rows" are pixels (n, h, w), each of
// C floats. Reductions over pixels accumulate in f32 over a block of at most
// BLOCK rows, then add the block into f64 totals: f32 alone over the 400,000
// pixels of a 112x112 batch would lose about four digits. Blocks restart at
// every image (`rowsPerImage`), so splitting a batch into micro-batches at
// image boundaries adds the same blocks in the same order: the totals are
// bitwise those of the whole batch.

const BLOCK: i32 = 64;

// ---------------------------------------------------------------- helpers

@inline function at(base: usize, index: i32): usize {
  return base + (<usize>index << 2);
}

@inline function at64(base: usize, index: i32): usize {
  return base + (<usize>index << 3);
}

/** Adds n f32 values at `src` into n f64 values at `dst`. */
function flush(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<f64>(at64(dst, i), load<f64>(at64(dst, i)) + <f64>load<f32>(at(src, i)));
  }
}

/** The mask of lanes with lo < y < hi (all ones or all zeros per lane). */
@inline function between(y: v128, lo: v128, hi: v128): v128 {
  return v128.and(f32x4.gt(y, lo), f32x4.lt(y, hi));
}

export function zeroF64(p: usize, n: i32): void {
  memory.fill(p, 0, <usize>n << 3);
}

export function zeroF32(p: usize, n: i32): void {
  memory.fill(p, 0, <usize>n << 2);
}

/** dst[i] = f32(src[i]) for n f64 values. */
export function f64ToF32(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(at(dst, i), <f32>load<f64>(at64(src, i)));
}

/** dst[i] += f64(src[i]): an f32 gradient into an f64 total. */
export function addF32ToF64(src: usize, dst: usize, n: i32): void {
  flush(src, dst, n);
}

// ------------------------------------------------------ channel reductions

/**
 * Per channel over `rows` pixels: sum += Σ (x - shift) and sq += Σ (x - shift)²,
 * into f64 totals (accumulated, not reset). Subtracting a shift close to the
 * mean (the moving mean) keeps E[(x-K)²] - E[x-K]² from cancelling.
 * `shift` may be 0 (no shift) and `sq` 0 (sums only). `acc`: 2*C f32 scratch.
 */
export function channelMoments(
  x: usize, rows: i32, rowsPerImage: i32, C: i32, shift: usize, sum: usize, sq: usize, acc: usize,
): void {
  const c4 = C & ~3;
  const rowBytes = <usize>C << 2;
  const accSq = acc + rowBytes;
  const zero = f32x4.splat(0);
  for (let image0 = 0; image0 < rows; image0 += rowsPerImage) {
    const imageEnd = min(image0 + rowsPerImage, rows);
    for (let r0 = image0; r0 < imageEnd; r0 += BLOCK) {
      const r1 = min(r0 + BLOCK, imageEnd);
      memory.fill(acc, 0, rowBytes << 1);
      let row = x + <usize>r0 * rowBytes;
      for (let r = r0; r < r1; r++, row += rowBytes) {
        let c = 0;
        for (; c < c4; c += 4) {
          const o = <usize>c << 2;
          const k = shift ? v128.load(shift + o) : zero;
          const v = f32x4.sub(v128.load(row + o), k);
          v128.store(acc + o, f32x4.add(v128.load(acc + o), v));
          if (sq) v128.store(accSq + o, f32x4.add(v128.load(accSq + o), f32x4.mul(v, v)));
        }
        for (; c < C; c++) {
          const k: f32 = shift ? load<f32>(at(shift, c)) : 0;
          const v = load<f32>(at(row, c)) - k;
          store<f32>(at(acc, c), load<f32>(at(acc, c)) + v);
          if (sq) store<f32>(at(accSq, c), load<f32>(at(accSq, c)) + v * v);
        }
      }
      flush(acc, sum, C);
      if (sq) flush(accSq, sq, C);
    }
  }
}

/**
 * y = x * scale[c] + shift[c], then clamped to [lo, hi] when `clamp` is set
 * (ReLU: lo 0, hi +Inf; ReLU6: lo 0, hi 6). y may be x (in place).
 */
export function affine(
  x: usize, y: usize, rows: i32, C: i32, scale: usize, shift: usize, clamp: i32, lo: f32, hi: f32,
): void {
  const c4 = C & ~3;
  const rowBytes = <usize>C << 2;
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  let xr = x;
  let yr = y;
  for (let r = 0; r < rows; r++, xr += rowBytes, yr += rowBytes) {
    let c = 0;
    for (; c < c4; c += 4) {
      const o = <usize>c << 2;
      let v = f32x4.add(f32x4.mul(v128.load(xr + o), v128.load(scale + o)), v128.load(shift + o));
      if (clamp) v = f32x4.min(f32x4.max(v, loV), hiV);
      v128.store(yr + o, v);
    }
    for (; c < C; c++) {
      let v = load<f32>(at(xr, c)) * load<f32>(at(scale, c)) + load<f32>(at(shift, c));
      if (clamp) v = min(max(v, lo), hi);
      store<f32>(at(yr, c), v);
    }
  }
}

/**
 * The reductions of BatchNormalization's gradient, with the clamp of a fused
 * ReLU/ReLU6 folded in: g = dy where lo < y < hi (all of dy when `clamp` is
 * 0; y is then not read), and per channel sumG += Σ g,
 * sumGX += Σ g * (x - mean), in f64. `acc`: 2*C f32 scratch.
 */
export function bnGradReduce(
  dy: usize, y: usize, x: usize, rows: i32, rowsPerImage: i32, C: i32, mean: usize,
  clamp: i32, lo: f32, hi: f32, sumG: usize, sumGX: usize, acc: usize,
): void {
  const c4 = C & ~3;
  const rowBytes = <usize>C << 2;
  const accGX = acc + rowBytes;
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  for (let image0 = 0; image0 < rows; image0 += rowsPerImage) {
    const imageEnd = min(image0 + rowsPerImage, rows);
    for (let r0 = image0; r0 < imageEnd; r0 += BLOCK) {
      const r1 = min(r0 + BLOCK, imageEnd);
      memory.fill(acc, 0, rowBytes << 1);
      const start = <usize>r0 * rowBytes;
      let dr = dy + start;
      let yr = y + start;
      let xr = x + start;
      for (let r = r0; r < r1; r++, dr += rowBytes, yr += rowBytes, xr += rowBytes) {
        let c = 0;
        for (; c < c4; c += 4) {
          const o = <usize>c << 2;
          let g = v128.load(dr + o);
          if (clamp) g = v128.and(g, between(v128.load(yr + o), loV, hiV));
          const d = f32x4.sub(v128.load(xr + o), v128.load(mean + o));
          v128.store(acc + o, f32x4.add(v128.load(acc + o), g));
          v128.store(accGX + o, f32x4.add(v128.load(accGX + o), f32x4.mul(g, d)));
        }
        for (; c < C; c++) {
          let g = load<f32>(at(dr, c));
          if (clamp) {
            const v = load<f32>(at(yr, c));
            if (!(v > lo && v < hi)) g = 0;
          }
          const d = load<f32>(at(xr, c)) - load<f32>(at(mean, c));
          store<f32>(at(acc, c), load<f32>(at(acc, c)) + g);
          store<f32>(at(accGX, c), load<f32>(at(accGX, c)) + g * d);
        }
      }
      flush(acc, sumG, C);
      flush(accGX, sumGX, C);
    }
  }
}

/**
 * dx = A[c] * g + B[c] * (x - mean[c]) + D[c], g as in bnGradReduce. With
 * `useX` 0, x and mean are not read and B is ignored (a frozen
 * BatchNormalization in inference mode, or a bare ReLU with A = 1, D = 0).
 * dx may be dy (in place).
 */
export function bnGradApply(
  dy: usize, y: usize, x: usize, dx: usize, rows: i32, C: i32, mean: usize,
  A: usize, B: usize, D: usize, clamp: i32, lo: f32, hi: f32, useX: i32,
): void {
  const c4 = C & ~3;
  const rowBytes = <usize>C << 2;
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  let dr = dy;
  let yr = y;
  let xr = x;
  let outr = dx;
  for (let r = 0; r < rows; r++, dr += rowBytes, yr += rowBytes, xr += rowBytes, outr += rowBytes) {
    let c = 0;
    for (; c < c4; c += 4) {
      const o = <usize>c << 2;
      let g = v128.load(dr + o);
      if (clamp) g = v128.and(g, between(v128.load(yr + o), loV, hiV));
      let v = f32x4.add(f32x4.mul(v128.load(A + o), g), v128.load(D + o));
      if (useX) v = f32x4.add(v, f32x4.mul(v128.load(B + o), f32x4.sub(v128.load(xr + o), v128.load(mean + o))));
      v128.store(outr + o, v);
    }
    for (; c < C; c++) {
      let g = load<f32>(at(dr, c));
      if (clamp) {
        const yv = load<f32>(at(yr, c));
        if (!(yv > lo && yv < hi)) g = 0;
      }
      let v = load<f32>(at(A, c)) * g + load<f32>(at(D, c));
      if (useX) v += load<f32>(at(B, c)) * (load<f32>(at(xr, c)) - load<f32>(at(mean, c)));
      store<f32>(at(outr, c), v);
    }
  }
}

/** dx = dy where lo < y < hi, else 0 (the gradient of a ReLU or ReLU6 from its output). */
export function clampGrad(dy: usize, y: usize, dx: usize, n: i32, lo: f32, hi: f32): void {
  const n4 = n & ~3;
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(dx + o, v128.and(v128.load(dy + o), between(v128.load(y + o), loV, hiV)));
  }
  for (; i < n; i++) {
    const v = load<f32>(at(y, i));
    store<f32>(at(dx, i), v > lo && v < hi ? load<f32>(at(dy, i)) : 0);
  }
}

// -------------------------------------------------------------- depthwise

/**
 * Both gradients of a depthwise convolution with channel multiplier 1, in
 * one pass over dy: for every output pixel and tap,
 *   dw[kh,kw,c] += x[pixel under the tap, c] * dy[c]   (f64 totals at dwAcc)
 *   dx[pixel under the tap, c] += dy[c] * w[kh,kw,c]
 * Either output may be 0 (not wanted). dx is zeroed first. `scratch`: KH*KW*C
 * f32, summed over one output row of one image, then added to the totals.
 */
export function depthwiseBackward(
  x: usize, dy: usize, w: usize, dx: usize, dwAcc: usize, scratch: usize,
  N: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, pt: i32, pl: i32,
): void {
  const c4 = C & ~3;
  const pix = <usize>C << 2;
  const taps = KH * KW * C;
  if (dx) memory.fill(dx, 0, <usize>N * <usize>H * <usize>W * pix);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      if (dwAcc) memory.fill(scratch, 0, <usize>taps << 2);
      for (let ow = 0; ow < OW; ow++) {
        const d = dy + ((<usize>n * <usize>OH + <usize>oh) * <usize>OW + <usize>ow) * pix;
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh + kh * dh - pt;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw + kw * dw - pl;
            if (iw < 0 || iw >= W) continue;
            const offset = ((<usize>n * <usize>H + <usize>ih) * <usize>W + <usize>iw) * pix;
            const tap = <usize>(kh * KW + kw) * pix;
            if (dwAcc) {
              const xp = x + offset;
              const ap = scratch + tap;
              let c = 0;
              for (; c < c4; c += 4) {
                const o = <usize>c << 2;
                v128.store(ap + o, f32x4.add(v128.load(ap + o), f32x4.mul(v128.load(xp + o), v128.load(d + o))));
              }
              for (; c < C; c++) store<f32>(at(ap, c), load<f32>(at(ap, c)) + load<f32>(at(xp, c)) * load<f32>(at(d, c)));
            }
            if (dx) {
              const gp = dx + offset;
              const wp = w + tap;
              let c = 0;
              for (; c < c4; c += 4) {
                const o = <usize>c << 2;
                v128.store(gp + o, f32x4.add(v128.load(gp + o), f32x4.mul(v128.load(d + o), v128.load(wp + o))));
              }
              for (; c < C; c++) store<f32>(at(gp, c), load<f32>(at(gp, c)) + load<f32>(at(d, c)) * load<f32>(at(wp, c)));
            }
          }
        }
      }
      if (dwAcc) flush(scratch, dwAcc, taps);
    }
  }
}

// ------------------------------------------------------ conv filter gradient

/**
 * The filter gradient of a 2-D convolution (a Dense layer is the 1x1 case
 * with H = W = 1): dw[kh,kw,ci,co] += Σ x[pixel under tap (kh,kw) of p, ci] * dy[p, co]
 * over every output pixel p, into f64 totals at dwAcc ([KH,KW,CI,CO]).
 *
 * Output pixels go in blocks of at most BLOCK within one image. A 1x1,
 * stride-1, unpadded convolution reads its input rows where they are; any
 * other gathers each pixel's receptive field (KH*KW*CI floats, zeros where a
 * tap falls in the padding) into a row of `scratch`, so that the sum is one
 * product of a [count, KH*KW*CI] block with a [count, CO] block whatever the
 * kernel size, with full SIMD tiles even for the 3 channels of an RGB
 * input. Each 4 x 8 tile of the result is summed in eight SIMD registers
 * over the block and added to its f64 totals.
 *
 * `scratch`: 2*BLOCK pointers, then BLOCK rows of KH*KW*CI floats (none
 * for the 1x1 case).
 */
export function convFilterGrad(
  x: usize, dy: usize, dwAcc: usize, scratch: usize,
  N: i32, H: i32, W: i32, CI: i32, OH: i32, OW: i32, CO: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, pt: i32, pl: i32,
): void {
  const xPix = <usize>CI << 2;
  const dPix = <usize>CO << 2;
  const P = OH * OW;
  const K = KH * KW * CI;
  const xs = scratch;
  const ds = scratch + (<usize>BLOCK << 2);
  const rows = scratch + (<usize>BLOCK << 3);
  const rowBytes = <usize>K << 2;
  const direct = KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  for (let n = 0; n < N; n++) {
    for (let p0 = 0; p0 < P; p0 += BLOCK) {
      const p1 = min(p0 + BLOCK, P);
      let count = 0;
      for (let p = p0; p < p1; p++, count++) {
        store<u32>(at(ds, count), <u32>(dy + (<usize>n * <usize>P + <usize>p) * dPix));
        if (direct) {
          store<u32>(at(xs, count), <u32>(x + (<usize>n * <usize>P + <usize>p) * xPix));
          continue;
        }
        const row = rows + <usize>count * rowBytes;
        store<u32>(at(xs, count), <u32>row);
        const oh = p / OW;
        const ow = p - oh * OW;
        let to = row;
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh + kh * dh - pt;
          for (let kw = 0; kw < KW; kw++, to += xPix) {
            const iw = ow * sw + kw * dw - pl;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) memory.fill(to, 0, xPix);
            else memory.copy(to, x + ((<usize>n * <usize>H + <usize>ih) * <usize>W + <usize>iw) * xPix, xPix);
          }
        }
      }
      tapGradient(xs, ds, count, K, CO, dwAcc);
    }
  }
}

/** Σ over `count` pixel pairs of x[ci] * dy[co], added to the f64 [CI, CO] block at `out`. */
function tapGradient(xs: usize, ds: usize, count: i32, CI: i32, CO: i32, out: usize): void {
  const ci4 = CI & ~3;
  const co8 = CO & ~7;
  const co4 = CO & ~3;
  let ci = 0;
  for (; ci < ci4; ci += 4) {
    const xo = <usize>ci << 2;
    let co = 0;
    for (; co < co8; co += 8) {
      const d0 = <usize>co << 2;
      const d1 = d0 + 16;
      let a00 = f32x4.splat(0), a01 = f32x4.splat(0);
      let a10 = f32x4.splat(0), a11 = f32x4.splat(0);
      let a20 = f32x4.splat(0), a21 = f32x4.splat(0);
      let a30 = f32x4.splat(0), a31 = f32x4.splat(0);
      for (let j = 0; j < count; j++) {
        const xp = <usize>load<u32>(at(xs, j)) + xo;
        const dp = <usize>load<u32>(at(ds, j));
        const g0 = v128.load(dp + d0);
        const g1 = v128.load(dp + d1);
        const x0 = f32x4.splat(load<f32>(xp));
        const x1 = f32x4.splat(load<f32>(xp, 4));
        const x2 = f32x4.splat(load<f32>(xp, 8));
        const x3 = f32x4.splat(load<f32>(xp, 12));
        a00 = f32x4.add(a00, f32x4.mul(x0, g0)); a01 = f32x4.add(a01, f32x4.mul(x0, g1));
        a10 = f32x4.add(a10, f32x4.mul(x1, g0)); a11 = f32x4.add(a11, f32x4.mul(x1, g1));
        a20 = f32x4.add(a20, f32x4.mul(x2, g0)); a21 = f32x4.add(a21, f32x4.mul(x2, g1));
        a30 = f32x4.add(a30, f32x4.mul(x3, g0)); a31 = f32x4.add(a31, f32x4.mul(x3, g1));
      }
      const row = out + ((<usize>ci * <usize>CO + <usize>co) << 3);
      const stride = <usize>CO << 3;
      addLanes(row, a00, a01);
      addLanes(row + stride, a10, a11);
      addLanes(row + 2 * stride, a20, a21);
      addLanes(row + 3 * stride, a30, a31);
    }
    for (; co < co4; co += 4) {
      const d0 = <usize>co << 2;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let j = 0; j < count; j++) {
        const xp = <usize>load<u32>(at(xs, j)) + xo;
        const g = v128.load(<usize>load<u32>(at(ds, j)) + d0);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(xp)), g));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.splat(load<f32>(xp, 4)), g));
        a2 = f32x4.add(a2, f32x4.mul(f32x4.splat(load<f32>(xp, 8)), g));
        a3 = f32x4.add(a3, f32x4.mul(f32x4.splat(load<f32>(xp, 12)), g));
      }
      const row = out + ((<usize>ci * <usize>CO + <usize>co) << 3);
      const stride = <usize>CO << 3;
      addLanes4(row, a0);
      addLanes4(row + stride, a1);
      addLanes4(row + 2 * stride, a2);
      addLanes4(row + 3 * stride, a3);
    }
    for (; co < CO; co++) {
      for (let k = 0; k < 4; k++) scalarTap(xs, ds, count, ci + k, co, CO, out);
    }
  }
  for (; ci < CI; ci++) {
    const xo = <usize>ci << 2;
    let co = 0;
    for (; co < co8; co += 8) {
      const d0 = <usize>co << 2;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      for (let j = 0; j < count; j++) {
        const xv = f32x4.splat(load<f32>(<usize>load<u32>(at(xs, j)) + xo));
        const dp = <usize>load<u32>(at(ds, j)) + d0;
        a0 = f32x4.add(a0, f32x4.mul(xv, v128.load(dp)));
        a1 = f32x4.add(a1, f32x4.mul(xv, v128.load(dp, 16)));
      }
      addLanes(out + ((<usize>ci * <usize>CO + <usize>co) << 3), a0, a1);
    }
    for (; co < co4; co += 4) {
      const d0 = <usize>co << 2;
      let a = f32x4.splat(0);
      for (let j = 0; j < count; j++) {
        const xv = f32x4.splat(load<f32>(<usize>load<u32>(at(xs, j)) + xo));
        a = f32x4.add(a, f32x4.mul(xv, v128.load(<usize>load<u32>(at(ds, j)) + d0)));
      }
      addLanes4(out + ((<usize>ci * <usize>CO + <usize>co) << 3), a);
    }
    for (; co < CO; co++) scalarTap(xs, ds, count, ci, co, CO, out);
  }
}

function scalarTap(xs: usize, ds: usize, count: i32, ci: i32, co: i32, CO: i32, out: usize): void {
  let s: f32 = 0;
  for (let j = 0; j < count; j++) {
    s += load<f32>(at(<usize>load<u32>(at(xs, j)), ci)) * load<f32>(at(<usize>load<u32>(at(ds, j)), co));
  }
  const o = out + ((<usize>ci * <usize>CO + <usize>co) << 3);
  store<f64>(o, load<f64>(o) + <f64>s);
}

@inline function addLanes4(p: usize, a: v128): void {
  store<f64>(p, load<f64>(p) + <f64>f32x4.extract_lane(a, 0));
  store<f64>(p + 8, load<f64>(p + 8) + <f64>f32x4.extract_lane(a, 1));
  store<f64>(p + 16, load<f64>(p + 16) + <f64>f32x4.extract_lane(a, 2));
  store<f64>(p + 24, load<f64>(p + 24) + <f64>f32x4.extract_lane(a, 3));
}

@inline function addLanes(p: usize, a: v128, b: v128): void {
  addLanes4(p, a);
  addLanes4(p + 32, b);
}

/**
 * dx[n, p, c] = dy[n, c] * s for every pixel p of P: the gradient of a global
 * average pooling (s = 1/P).
 */
export function spreadChannels(dy: usize, dx: usize, N: i32, P: i32, C: i32, s: f32): void {
  const c4 = C & ~3;
  const pix = <usize>C << 2;
  const sv = f32x4.splat(s);
  let out = dx;
  for (let n = 0; n < N; n++) {
    const d = dy + <usize>n * pix;
    for (let p = 0; p < P; p++, out += pix) {
      let c = 0;
      for (; c < c4; c += 4) {
        const o = <usize>c << 2;
        v128.store(out + o, f32x4.mul(v128.load(d + o), sv));
      }
      for (; c < C; c++) store<f32>(at(out, c), load<f32>(at(d, c)) * s);
    }
  }
}
