/**
 * A real PostgreSQL server for tests, benchmarks and `modelplane dev`: Debian's
 * `postgresql-15` binaries (`make postgres` installs them, hack/postgres.sh), started as a
 * process on a free 127.0.0.1 port with a temporary data directory, like etcd. It is
 * tethered to this process (harness/tether.ts): it does not outlive it.
 *
 * PostgreSQL refuses to run as root: as root, initdb and postgres run as the `postgres`
 * system user (the package makes it), through util-linux `setpriv`.
 *
 * `stop()` shuts it down (fast shutdown: clients are disconnected), `kill()` SIGKILLs it as
 * a crash would, and `start()` starts it again on the same data directory and port.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, GiveUp, GroupProcess, waitFor } from './processes.ts';

export const POSTGRES_PACKAGE = 'postgresql-15';
const DEFAULT_BIN = '/usr/lib/postgresql/15/bin';

/** The directory of PostgreSQL's server binaries; throws, naming the package, when they are missing. */
export function postgresBinDir(): string {
  const dir = process.env.MODELPLANE_POSTGRES_BIN ?? DEFAULT_BIN;
  if (!existsSync(join(dir, 'postgres')) || !existsSync(join(dir, 'initdb'))) {
    throw new Error(
      `PostgreSQL's server is not installed (no ${join(dir, 'postgres')}): run \`make postgres\`, or install ` +
        `the Debian/Ubuntu package ${POSTGRES_PACKAGE} (apt-get install -y ${POSTGRES_PACKAGE}), or set ` +
        'MODELPLANE_POSTGRES_BIN to the bin directory of a PostgreSQL >= 14',
    );
  }
  return dir;
}

/** uid and gid of the user PostgreSQL runs as: this process's own, or `postgres` when this is root. */
function runAs(): { uid: number; gid: number; wrap: string[] } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(
        `PostgreSQL refuses to run as root, and there is no \`postgres\` user to run it as: install ${POSTGRES_PACKAGE} (it makes one), or run as another user`,
      );
    }
    return Number(r.stdout.trim());
  };
  const uid = id('-u');
  const gid = id('-g');
  // --pdeathsig again after the change of user: the kernel clears it when the uid changes.
  return {
    uid,
    gid,
    wrap: ['--reuid', String(uid), '--regid', String(gid), '--clear-groups', '--pdeathsig', 'SIGKILL', '--'],
  };
}

export interface PostgresServerOptions {
  /** Settings (`name=value`) after the harness's own. */
  settings?: string[];
  /**
   * fsync and synchronous commit (default true: a server as deployed). False makes commits
   * cheaper where a test does not measure durability.
   */
  fsync?: boolean;
}

export class PostgresServer {
  readonly port: number;
  /** The directory that holds the data directory (`data/`) and the log (`postgres.log`). */
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  private proc: GroupProcess | undefined;
  private readonly bin: string;
  private readonly args: string[];
  private readonly wrap: string[] | undefined;
  private dbSeq = 0;

  private constructor(bin: string, dir: string, port: number, args: string[], wrap: string[] | undefined) {
    this.bin = bin;
    this.dir = dir;
    this.port = port;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'postgres.log');
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    this.args = args;
    this.wrap = wrap;
  }

  /** Makes a fresh data directory (initdb) and starts the server on a free port. */
  static async start(opts: PostgresServerOptions = {}): Promise<PostgresServer> {
    const bin = postgresBinDir();
    const user = runAs();
    const dir = mkdtempSync(join(tmpdir(), 'modelplane-postgres-'));
    if (user) chownSync(dir, user.uid, user.gid);
    const port = await freePort();
    const fsync = opts.fsync ?? true;
    const args = [
      '-D',
      join(dir, 'data'),
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
      '-c',
      `fsync=${fsync ? 'on' : 'off'}`,
      '-c',
      `synchronous_commit=${fsync ? 'on' : 'off'}`,
      ...(opts.settings ?? []).flatMap((s) => ['-c', s]),
    ];
    const server = new PostgresServer(bin, dir, port, args, user?.wrap);
    const initdb = [join(bin, 'initdb'), '-D', server.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8'];
    try {
      if (user) execFileSync('setpriv', [...user.wrap, ...initdb, '--no-sync'], { stdio: 'pipe', cwd: dir });
      else execFileSync(initdb[0]!, [...initdb.slice(1), '--no-sync'], { stdio: 'pipe', cwd: dir });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`initdb failed: ${e.stderr?.toString() || e.message}`);
    }
    await server.start();
    return server;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Starts the server (again) on its data directory and port; resolves once it answers queries. */
  async start(): Promise<void> {
    if (this.proc?.running) return;
    const postgres = join(this.bin, 'postgres');
    const [command, args] = this.wrap
      ? ['setpriv', [...this.wrap, postgres, ...this.args]]
      : [postgres, this.args];
    const proc = new GroupProcess('postgres', command, args, { logFile: this.logFile, cwd: this.dir });
    this.proc = proc;
    await waitFor(
      `PostgreSQL to accept connections on 127.0.0.1:${this.port}`,
      async () => {
        if (!proc.running) throw new GiveUp(`PostgreSQL exited at start:\n${proc.logTail(20)}`);
        const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2_000 });
        try {
          await c.connect();
          await c.query('SELECT 1');
          return true;
        } finally {
          await c.end().catch(() => {});
        }
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
  }

  /** Shuts it down (fast: clients are disconnected, the data is checkpointed); resolves once it is gone. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    proc.signal('SIGINT');
    const timer = setTimeout(() => proc.signalGroup('SIGKILL'), 30_000);
    await proc.exited;
    clearTimeout(timer);
    await proc.stop(1_000); // what is left of its group
  }

  /** SIGKILLs it and its backends, as a crash would; resolves once they are gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    proc.signalGroup('SIGKILL');
    await proc.stop(0);
  }

  /** A new, empty database on this server; resolves its URL. */
  async createDatabase(prefix = 'test'): Promise<string> {
    const name = `${prefix}_${process.pid}_${++this.dbSeq}`;
    const c = new pg.Client({ connectionString: this.url });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE ${name}`);
    } finally {
      await c.end();
    }
    return this.url.replace(/\/postgres$/, `/${name}`);
  }

  /** The last lines of its log. */
  logTail(lines = 20): string {
    return this.proc?.logTail(lines) ?? '';
  }

  /** Stops it and removes its directory. */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
