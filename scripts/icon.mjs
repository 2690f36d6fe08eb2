// Draws media/icon.png (128×128 RGBA): a heatmap-like 4×4 grid of tensor cells on a
// dark tile. Run `node scripts/icon.mjs` after changing it; the PNG is committed.
import { deflateSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';

const SIZE = 128; // the Marketplace's icon size
const CELLS = 4;
const MARGIN = 16;
const GAP = 4;

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// Cell intensity in [0, 1]: a smooth ridge plus one outlier, like a weight matrix heatmap.
const value = (r, c) => (r === 1 && c === 2 ? 1 : 0.15 + 0.5 * Math.exp(-((r - c) ** 2) / 2));
// Blue (low) to amber (high).
const lerp = (a, b, t) => Math.round(a + (b - a) * t);
const color = (t) => [lerp(40, 255, t), lerp(90, 180, t), lerp(200, 40, t)];

const rgba = Buffer.alloc(SIZE * SIZE * 4);
const cell = (SIZE - 2 * MARGIN - (CELLS - 1) * GAP) / CELLS;
for (let y = 0; y < SIZE; y++) {
  for (let x = 0; x < SIZE; x++) {
    let px = [30, 30, 36, 255];
    // Rounded tile: transparent outside a 12-px corner radius.
    const cx = Math.min(x, SIZE - 1 - x), cy = Math.min(y, SIZE - 1 - y);
    if (cx < 12 && cy < 12 && (12 - cx) ** 2 + (12 - cy) ** 2 > 144) px = [0, 0, 0, 0];
    const gx = x - MARGIN, gy = y - MARGIN;
    const c = Math.floor(gx / (cell + GAP)), r = Math.floor(gy / (cell + GAP));
    if (gx >= 0 && gy >= 0 && c < CELLS && r < CELLS && gx - c * (cell + GAP) < cell && gy - r * (cell + GAP) < cell) {
      px = [...color(value(r, c)), 255];
    }
    rgba.set(px, (y * SIZE + x) * 4);
  }
}
// Each scanline starts with filter byte 0 (none).
const raw = Buffer.alloc(SIZE * (SIZE * 4 + 1));
for (let y = 0; y < SIZE; y++) rgba.copy(raw, y * (SIZE * 4 + 1) + 1, y * SIZE * 4, (y + 1) * SIZE * 4);
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(SIZE, 0);
ihdr.writeUInt32BE(SIZE, 4);
ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA, no interlace
const png = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk('IHDR', ihdr),
  chunk('IDAT', deflateSync(raw, { level: 9 })),
  chunk('IEND', Buffer.alloc(0)),
]);
writeFileSync(new URL('../media/icon.png', import.meta.url), png);
console.log(`media/icon.png: ${png.length} bytes`);
