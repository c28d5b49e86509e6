/**
 * Start-up progress: a spinner line per step on a terminal, plain lines
 * otherwise (a pipe, a log file, a test reading the output).
 */

export interface Progress {
  /** Runs one step, showing it while it runs and how long it took. */
  step<T>(what: string, fn: () => Promise<T>): Promise<T>;
  /** A line of information between steps. */
  note(line: string): void;
  /** Stops any spinner (on interruption). */
  stop(): void;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export function createProgress(stream: NodeJS.WriteStream, tty = stream.isTTY === true): Progress {
  let n = 0;
  let timer: NodeJS.Timeout | null = null;
  let current = '';
  let interrupted = false;
  const clearLine = (): void => {
    if (tty) stream.write('\r\x1b[2K');
  };
  const stopSpinner = (): void => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  return {
    async step<T>(what: string, fn: () => Promise<T>): Promise<T> {
      n++;
      const label = `[${n}] ${what}`;
      const t0 = Date.now();
      current = label;
      if (tty) {
        let f = 0;
        const draw = (): void => {
          clearLine();
          stream.write(`${FRAMES[f++ % FRAMES.length]} ${label} ${secs(Date.now() - t0)}`);
        };
        draw();
        timer = setInterval(draw, 100);
      } else {
        stream.write(`${label} ...\n`);
      }
      try {
        const v = await fn();
        stopSpinner();
        clearLine();
        stream.write(tty ? `✓ ${label} (${secs(Date.now() - t0)})\n` : `${label}: done (${secs(Date.now() - t0)})\n`);
        return v;
      } catch (e) {
        stopSpinner();
        if (!interrupted) {
          clearLine();
          stream.write(tty ? `✗ ${label} failed\n` : `${label}: failed\n`);
        }
        throw e;
      } finally {
        current = '';
      }
    },
    note(line: string): void {
      clearLine();
      stream.write(line + '\n');
    },
    stop(): void {
      interrupted = true;
      stopSpinner();
      if (current) {
        clearLine();
        stream.write(`${tty ? '✗ ' : ''}${current}: interrupted\n`);
        current = '';
      }
    },
  };
}
