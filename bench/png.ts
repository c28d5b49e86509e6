/**
 * The PNG beside each chart: the benches draw their charts as SVG (text, easy
 * to diff and to test) and render a PNG from it for places that show only
 * raster images. Rendering is librsvg's `rsvg-convert` (Debian librsvg2-bin,
 * installed by ./build); without it the SVG stays and the caller says why.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

export type PngResult = { png: string } | { error: string };

/** Renders `svgFile` to the same name with .png (written whole, then renamed). */
export function svgToPng(svgFile: string): PngResult {
  const png = svgFile.replace(/\.svg$/, '') + '.png';
  const tmp = `${png}.tmp`;
  const r = spawnSync('rsvg-convert', ['--format', 'png', '--output', tmp, svgFile], { encoding: 'utf8' });
  if (r.error) return { error: `rsvg-convert (Debian package librsvg2-bin): ${r.error.message}` };
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    return { error: `rsvg-convert ${svgFile}: exit ${r.status ?? r.signal}: ${r.stderr.trim().slice(0, 300)}` };
  }
  fs.renameSync(tmp, png);
  return { png };
}
