import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The package version (package.json is the one source of truth). */
export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
