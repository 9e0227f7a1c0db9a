// A real kube-apiserver (with etcd) on loopback for the indri tests: the binaries come from
// test/setup/apiserver.sh, which the tests run themselves when the binaries are missing.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const PREFIX = process.env.RS_APISERVER_PREFIX ?? "/opt/runner-secrets-apiserver";

export interface Binaries {
  etcd: string;
  apiserver: string;
  /** Optional: runs the garbage collector and the Deployment/ReplicaSet controllers. */
  controllerManager?: string;
  /** ESO v0.16.2's CRDs (config/crds/bases of the external-secrets Go module). */
  esoCrds: string;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return undefined;
}

/** The binaries, or why they are missing. */
function findBinaries(): Binaries | string {
  const apiserver = process.env.RS_KUBE_APISERVER ?? path.join(PREFIX, "kube-apiserver");
  const etcd = process.env.RS_ETCD ?? onPath("etcd");
  const esoCrds = process.env.RS_ESO_CRDS ?? path.join(PREFIX, "eso-crds");
  const missing = [
    fs.existsSync(apiserver) ? undefined : `kube-apiserver (${apiserver})`,
    etcd ? undefined : "etcd (on PATH)",
    fs.existsSync(path.join(esoCrds, "external-secrets.io_externalsecrets.yaml")) ? undefined : `ESO CRDs (${esoCrds})`,
  ].filter(Boolean);
  if (missing.length) return `no real API server here: missing ${missing.join(", ")}; run test/setup/apiserver.sh`;
  const controllerManager = process.env.RS_KUBE_CONTROLLER_MANAGER ?? path.join(PREFIX, "kube-controller-manager");
  return { apiserver, etcd: etcd!, esoCrds, ...(fs.existsSync(controllerManager) ? { controllerManager } : {}) };
}

/** The binaries, built by setup.sh first when they are missing (a few minutes, once per machine). */
export function requireBinaries(): Binaries {
  let found = findBinaries();
  if (typeof found === "string") {
    execFileSync("bash", [path.join(__dirname, "..", "setup", "apiserver.sh")], { stdio: ["ignore", "inherit", "inherit"] });
    found = findBinaries();
  }
  if (typeof found === "string") throw new Error(found);
  if (!found.controllerManager) throw new Error("no kube-controller-manager; run test/setup/apiserver.sh");
  return found;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface ApiServer {
  url: string;
  /** Whether kube-controller-manager is available (garbage collection, rollouts to ReplicaSets). */
  controllers: boolean;
  /**
   * Starts it and waits for the garbage collector's monitors to sync. Call it after installing
   * CRDs: the collector watches only the kinds it discovered, and finds new ones late.
   */
  startControllers(): Promise<void>;
  request(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<Response>;
  /** Server-side apply (application/apply-patch+yaml; JSON is YAML) as `manager`. */
  apply(urlPath: string, obj: unknown, manager: string, opts?: { force?: boolean; fieldValidation?: string }): Promise<Response>;
  stop(): Promise<void>;
  log(): string;
  /**
   * A kubeconfig file for `user` (one of the users given to startApiServer, or "admin") whose only
   * context is `context`: each client gets its own user, so the audit log tells them apart.
   */
  kubeconfig(user: string, context: string): string;
  /** The audit log's events (level Metadata, stage ResponseComplete), oldest first; [] without audit. */
  auditEvents(): AuditEvent[];
}

export interface AuditEvent {
  verb: string;
  user: string;
  requestURI: string;
  code: number;
  at: string;
}

const TOKEN = "runner-secrets-test-token";
const tokenOf = (user: string) => (user === "admin" ? TOKEN : `${TOKEN}-${user}`);

export async function startApiServer(bin: Binaries, opts: { users?: string[]; audit?: boolean } = {}): Promise<ApiServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-apiserver-"));
  const [client, peer, secure] = [await freePort(), await freePort(), await freePort()];
  const users = ["admin", ...(opts.users ?? [])];
  fs.writeFileSync(path.join(dir, "tokens.csv"), users.map((u, i) => `${tokenOf(u)},${u},${i},system:masters\n`).join(""));
  const auditLog = path.join(dir, "audit.log");
  if (opts.audit) {
    fs.writeFileSync(
      path.join(dir, "audit-policy.yaml"),
      "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
    );
  }
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const start = (cmd: string, args: string[], name: string) => {
    const out = fs.openSync(path.join(dir, `${name}.log`), "a");
    const child = spawn(cmd, args, { stdio: ["ignore", out, out] });
    children.push(child);
    logs.push(path.join(dir, `${name}.log`));
    return child;
  };
  const stop = async () => {
    for (const c of children.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const log = () => logs.map((l) => (fs.existsSync(l) ? fs.readFileSync(l, "utf8").split("\n").slice(-30).join("\n") : "")).join("\n");
  try {
    start(
      bin.etcd,
      [
        "--data-dir",
        path.join(dir, "etcd"),
        "--listen-client-urls",
        `http://127.0.0.1:${client}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${client}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${peer}`,
        "--initial-cluster",
        `default=http://127.0.0.1:${peer}`,
      ],
      "etcd",
    );
    const key = path.join(dir, "sa.key");
    const { generateKeyPairSync } = await import("node:crypto");
    const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
    fs.writeFileSync(key, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
    fs.writeFileSync(path.join(dir, "sa.pub"), pair.publicKey.export({ type: "spki", format: "pem" }));
    start(
      bin.apiserver,
      [
        `--etcd-servers=http://127.0.0.1:${client}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${secure}`,
        `--cert-dir=${path.join(dir, "certs")}`,
        `--token-auth-file=${path.join(dir, "tokens.csv")}`,
        "--authorization-mode=AlwaysAllow",
        // The runner's dind sidecar is privileged, as on indri.
        "--allow-privileged=true",
        "--service-account-issuer=https://kubernetes.default.svc",
        `--service-account-key-file=${path.join(dir, "sa.pub")}`,
        `--service-account-signing-key-file=${key}`,
        "--service-cluster-ip-range=10.96.0.0/16",
        "--disable-admission-plugins=ServiceAccount",
        ...(opts.audit
          ? [
              `--audit-policy-file=${path.join(dir, "audit-policy.yaml")}`,
              `--audit-log-path=${auditLog}`,
              "--audit-log-format=json",
              "--audit-log-mode=blocking",
            ]
          : []),
      ],
      "kube-apiserver",
    );

    const url = `https://127.0.0.1:${secure}`;
    let ca: Buffer | undefined;
    const request = (method: string, urlPath: string, body?: unknown, contentType = "application/json") =>
      new Promise<Response>((resolve, reject) => {
        const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
        const req = https.request(
          `${url}${urlPath}`,
          {
            method,
            ca,
            headers: {
              authorization: `Bearer ${TOKEN}`,
              accept: "application/json",
              ...(data === undefined ? {} : { "content-type": contentType, "content-length": Buffer.byteLength(data) }),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              let parsed: unknown = text;
              try {
                parsed = JSON.parse(text);
              } catch {
                /* plain text (readyz) */
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
            });
          },
        );
        req.on("error", reject);
        if (data !== undefined) req.write(data);
        req.end();
      });

    const deadline = Date.now() + 60_000;
    for (;;) {
      if (children.some((c) => c.exitCode !== null)) throw new Error(`a server exited:\n${log()}`);
      const crt = path.join(dir, "certs", "apiserver.crt");
      if (!ca && fs.existsSync(crt)) ca = fs.readFileSync(crt);
      if (ca) {
        const r = await request("GET", "/readyz").catch(() => undefined);
        if (r?.status === 200) break;
      }
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready in 60s:\n${log()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const apply = (urlPath: string, obj: unknown, manager: string, opts: { force?: boolean; fieldValidation?: string } = {}) => {
      const q = new URLSearchParams({ fieldManager: manager, fieldValidation: opts.fieldValidation ?? "Strict" });
      if (opts.force) q.set("force", "true");
      return request("PATCH", `${urlPath}?${q}`, obj, "application/apply-patch+yaml");
    };
    const kubeconfig = (user: string, context: string) => {
      const file = path.join(dir, `kubeconfig-${user}-${context}`);
      fs.writeFileSync(
        file,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{ name: "test", cluster: { server: url, "certificate-authority": path.join(dir, "certs", "apiserver.crt") } }],
          users: [{ name: user, user: { token: tokenOf(user) } }],
          contexts: [{ name: context, context: { cluster: "test", user } }],
          "current-context": context,
        }),
      );
      return file;
    };
    const auditEvents = (): AuditEvent[] => {
      if (!fs.existsSync(auditLog)) return [];
      return fs
        .readFileSync(auditLog, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l))
        .filter((e) => e.stage === "ResponseComplete")
        .map((e) => ({
          verb: e.verb,
          user: e.user?.username,
          requestURI: e.requestURI,
          code: e.responseStatus?.code,
          at: e.stageTimestamp,
        }));
    };
    const startControllers = async () => {
      if (!bin.controllerManager) throw new Error("no kube-controller-manager");
      const kubeconfigFile = kubeconfig("admin", "test");
      start(
        bin.controllerManager,
        [
          `--kubeconfig=${kubeconfigFile}`,
          "--controllers=garbagecollector,deployment,replicaset",
          "--leader-elect=false",
          "--use-service-account-credentials=false",
          "--secure-port=0",
        ],
        "kube-controller-manager",
      );
      const logFile = path.join(dir, "kube-controller-manager.log");
      const until = Date.now() + 60_000;
      while (!(fs.existsSync(logFile) && fs.readFileSync(logFile, "utf8").includes("all resource monitors have synced"))) {
        if (children.some((c) => c.exitCode !== null)) throw new Error(`a server exited:\n${log()}`);
        if (Date.now() > until) throw new Error(`kube-controller-manager not synced in 60s:\n${log()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    return { url, controllers: Boolean(bin.controllerManager), startControllers, request, apply, stop, log, kubeconfig, auditEvents };
  } catch (e) {
    await stop();
    throw e;
  }
}
