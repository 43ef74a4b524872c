// Runs the stack's child processes: each in its own process group (so grandchildren such as
// Nitro workers die with it), output prefixed by name, stopped in reverse start order.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const COLORS = [36, 35, 33, 32, 34, 31, 90];

export class Supervisor {
  private readonly processes: ManagedProcess[] = [];
  private stopping = false;
  onUnexpectedExit: ((proc: ManagedProcess, code: number | null) => void) | undefined;

  start(name: string, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; quiet?: RegExp } = {}): ManagedProcess {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const color = COLORS[this.processes.length % COLORS.length];
    const label = `\x1b[${color}m${name.padEnd(10)}\x1b[0m│ `;
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        if (options.quiet?.test(line)) return;
        process.stdout.write(`${label}${line}\n`);
      });
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const managed: ManagedProcess = { name, child, exited };
    void exited.then((code) => {
      if (!this.stopping) this.onUnexpectedExit?.(managed, code);
    });
    this.processes.push(managed);
    return managed;
  }

  pids(): number[] {
    return this.processes.map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** SIGTERM each process group in reverse order; SIGKILL what is still alive after the grace period. */
  async stopAll(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const proc of [...this.processes].reverse()) {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null || !proc.child.pid) continue;
      try {
        process.kill(-proc.child.pid, 'SIGTERM');
      } catch {
        continue;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-proc.child.pid!, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, graceMs);
      await proc.exited;
      clearTimeout(timer);
      // Grandchildren that ignored SIGTERM go with the group.
      try {
        process.kill(-proc.child.pid, 'SIGKILL');
      } catch {
        /* group already empty */
      }
    }
  }
}
