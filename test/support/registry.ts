// A real OCI registry for tests: the CNCF distribution registry (Debian's `docker-registry`) on
// 127.0.0.1, TLS with a throwaway CA, optional htpasswd (bcrypt) auth. Everything lives in a temp
// directory that stop() removes.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const REGISTRY_BIN = "/usr/bin/docker-registry";
const SETUP_SCRIPT = path.join(__dirname, "..", "setup", "registry-packages.sh");

function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** Installs the registry, htpasswd and openssl through test/setup/registry-packages.sh if missing. */
function ensureRegistryPackages(): void {
  if (fs.existsSync(REGISTRY_BIN) && onPath("htpasswd") && onPath("openssl")) return;
  const r = spawnSync("bash", [SETUP_SCRIPT], { stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    throw new Error(`${SETUP_SCRIPT} failed (exit ${r.status}); the registry tests need docker-registry, htpasswd, openssl`);
  }
}

/** A port that was free a moment ago (the kernel picked it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface TestCa {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** A CA and a server certificate for 127.0.0.1 and localhost, signed by it (openssl CLI). */
function makeCa(dir: string): TestCa {
  const p = (name: string) => path.join(dir, name);
  const ossl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  ossl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
    "-days",
    "2",
    "-subj",
    "/CN=runner-secrets test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  ossl([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    p("server.key"),
    "-out",
    p("server.csr"),
    "-subj",
    "/CN=127.0.0.1",
  ]);
  fs.writeFileSync(
    p("server.ext"),
    [
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "",
    ].join("\n"),
  );
  ossl([
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("server.crt"),
    "-days",
    "2",
    "-extfile",
    p("server.ext"),
  ]);
  return { dir, caFile: p("ca.crt"), certFile: p("server.crt"), keyFile: p("server.key") };
}

export interface RegistryOptions {
  /** htpasswd auth with this user and key; omit for a registry that lets anyone push. */
  auth?: { user: string; key: string };
}

export interface TestRegistry {
  url: string;
  port: number;
  caFile: string;
  /** The filesystem storage root the registry writes to. */
  storageDir: string;
  /** Where distribution keeps in-progress uploads of `repository`. */
  uploadsDir(repository: string): string;
  /**
   * Uploads of `repository` that are still open: distribution keeps an upload as a directory named
   * by its UUID holding `startedat` and `data`; its purger treats `startedat` as "this upload is
   * open". A cancelled upload loses both (2.8 leaves an empty `hashstates/` tree behind, which no
   * longer counts as an upload: GET on it answers 404 BLOB_UPLOAD_UNKNOWN).
   */
  openUploads(repository: string): string[];
  /** stderr/stdout of the registry so far (for failing tests). */
  log(): string;
  /**
   * Makes `key` the user's only accepted key (a rotation in zot). distribution 2.8 reads htpasswd
   * once at start, so the registry is restarted on the same port with the same storage.
   */
  setKey(key: string): Promise<void>;
  stop(): Promise<void>;
}

export function randomKey(): string {
  return `zak_${randomBytes(24).toString("hex")}`;
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  ensureRegistryPackages();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runner-secrets-registry-"));
  const ca = makeCa(dir);
  const storageDir = path.join(dir, "data");
  fs.mkdirSync(storageDir);
  const port = await freePort();

  let authBlock = "";
  const htpasswd = path.join(dir, "htpasswd");
  // -i: the password on stdin, not in argv; -B: bcrypt, the only hash distribution accepts.
  const writeHtpasswd = (user: string, key: string) =>
    execFileSync("htpasswd", ["-B", "-i", "-c", htpasswd, user], { input: key, stdio: ["pipe", "ignore", "pipe"] });
  if (opts.auth !== undefined) {
    writeHtpasswd(opts.auth.user, opts.auth.key);
    authBlock = ["auth:", "  htpasswd:", "    realm: runner-secrets-test", `    path: ${htpasswd}`, ""].join("\n");
  }
  const config = path.join(dir, "config.yml");
  fs.writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: info",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${storageDir}`,
      "  delete:",
      "    enabled: true",
      "  maintenance:",
      "    uploadpurging:",
      "      enabled: false",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString("hex")}`,
      "  tls:",
      `    certificate: ${ca.certFile}`,
      `    key: ${ca.keyFile}`,
      authBlock,
    ].join("\n"),
  );

  const url = `https://127.0.0.1:${port}`;
  const caPem = fs.readFileSync(ca.caFile, "utf8");
  let output = "";
  let child: ChildProcess;
  let exited: string | undefined;
  let exitPromise: Promise<void>;
  const kill = async (): Promise<void> => {
    if (exited === undefined) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exitPromise;
      clearTimeout(t);
    }
  };
  const stop = async (): Promise<void> => {
    await kill();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const launch = async (): Promise<void> => {
    exited = undefined;
    child = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    const c = child;
    exitPromise = new Promise<void>((resolve) =>
      c.once("exit", (code, signal) => {
        exited = `exit ${code ?? signal}`;
        resolve();
      }),
    );
    // Ready when /v2/ answers over TLS with our CA (any status: 401 with auth, 200 without).
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (exited !== undefined) {
        await stop();
        throw new Error(`docker-registry ended before it listened (${exited}):\n${output}`);
      }
      if (await answers(url, caPem)) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`docker-registry did not answer on ${url} within 20s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();

  const uploadsDir = (repository: string) =>
    path.join(storageDir, "docker", "registry", "v2", "repositories", ...repository.split("/"), "_uploads");
  return {
    url,
    port,
    caFile: ca.caFile,
    storageDir,
    uploadsDir,
    openUploads: (repository) => {
      const d = uploadsDir(repository);
      if (!fs.existsSync(d)) return [];
      return fs.readdirSync(d).filter((id) => ["startedat", "data"].some((f) => fs.existsSync(path.join(d, id, f))));
    },
    log: () => output,
    async setKey(key) {
      if (opts.auth === undefined) throw new Error("setKey: this registry has no auth");
      writeHtpasswd(opts.auth.user, key);
      await kill();
      await launch();
    },
    stop,
  };
}

function answers(url: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/v2/`, { ca, timeout: 1000, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(true));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

/** A TCP server that accepts connections and never says anything (not even a TLS handshake). */
export async function startSilentServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
