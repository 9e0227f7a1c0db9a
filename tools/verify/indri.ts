// What indri really holds and runs, read from the API server of the stack's own kube context:
// the ExternalSecret's Ready and refresh policy, the Secret's key-digest, the Deployment's
// pod-template digest and whether its running pods carry it and are Ready. Reads only.
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import type { KubernetesConfig } from "../../lib/config";

type Json = Record<string, any>;

export interface IndriFacts {
  externalSecretReady: boolean | "missing";
  refreshPolicy: string;
  /** The Secret's key-digest, or "missing". */
  secret: string;
  /** The Deployment's pod-template digest annotation, or "missing". */
  template: string;
  /** Running pods of the Deployment: their digest annotation and readiness. */
  pods: { name: string; digest: string; ready: boolean }[];
}

interface Client {
  get(p: string): Promise<Json | undefined>;
}

const fileOrData = (dir: string, file?: string, data?: string): Buffer | undefined =>
  data ? Buffer.from(data, "base64") : file ? fs.readFileSync(path.isAbsolute(file) ? file : path.join(dir, file)) : undefined;

/** A GET-only client for one kubeconfig context: token or client-certificate users. */
function kubeClient(cfg: KubernetesConfig): Client {
  const file = cfg.kubeconfig ?? process.env.KUBECONFIG?.split(":")[0] ?? path.join(os.homedir(), ".kube", "config");
  const doc = parseYaml(fs.readFileSync(file, "utf8")) as Json;
  const named = (list: string, name: string) => ((doc[list] ?? []) as Json[]).find((x) => x.name === name);
  const ctx = named("contexts", cfg.context)?.context;
  if (!ctx) throw new Error(`kube context "${cfg.context}" not in ${file}`);
  const cluster = named("clusters", ctx.cluster)?.cluster;
  const user = named("users", ctx.user)?.user ?? {};
  if (!cluster?.server) throw new Error(`context "${cfg.context}" names no cluster server`);
  if (user.exec || user["auth-provider"])
    throw new Error(`context "${cfg.context}": exec and auth-provider users are not supported by verify`);
  const dir = path.dirname(file);
  const token = user.token ?? (user.tokenFile ? fs.readFileSync(user.tokenFile, "utf8").trim() : undefined);
  const agent = new https.Agent({
    ca: fileOrData(dir, cluster["certificate-authority"], cluster["certificate-authority-data"]),
    cert: fileOrData(dir, user["client-certificate"], user["client-certificate-data"]),
    key: fileOrData(dir, user["client-key"], user["client-key-data"]),
    rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
  });
  const server = String(cluster.server).replace(/\/+$/, "");
  return {
    get: (p) =>
      new Promise((resolve, reject) => {
        const req = https.get(
          `${server}${p}`,
          { agent, headers: { accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, timeout: 15_000 },
          (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => {
              if (res.statusCode === 404) return resolve(undefined);
              if (res.statusCode !== 200)
                return reject(new Error(`GET ${p}: HTTP ${res.statusCode} ${(JSON.parse(body || "{}") as Json).message ?? ""}`.trim()));
              resolve(JSON.parse(body) as Json);
            });
          },
        );
        req.on("timeout", () => req.destroy(new Error(`GET ${server}${p}: timed out`)));
        req.on("error", (e) => reject(new Error(`${server}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
      }),
  };
}

const DIGEST = "runner-secrets/key-digest";

export async function probeIndri(cfg: KubernetesConfig, client: Client = kubeClient(cfg)): Promise<IndriFacts> {
  const ns = `/namespaces/${cfg.namespace}`;
  const es = await client.get(`/apis/external-secrets.io/v1${ns}/externalsecrets/${cfg.externalSecret}`);
  const secret = await client.get(`/api/v1${ns}/secrets/${cfg.secretName}`);
  const dep = await client.get(`/apis/apps/v1${ns}/deployments/${cfg.deployment}`);
  const ready = ((es?.status?.conditions ?? []) as Json[]).find((c) => c.type === "Ready");
  const digestData = secret?.data?.["key-digest"];
  const facts: IndriFacts = {
    externalSecretReady: es ? ready?.status === "True" : "missing",
    refreshPolicy: es?.spec?.refreshPolicy ?? "(none)",
    secret: digestData ? Buffer.from(digestData, "base64").toString("utf8") : "missing",
    template: dep?.spec?.template?.metadata?.annotations?.[DIGEST] ?? "missing",
    pods: [],
  };
  const labels = dep?.spec?.selector?.matchLabels as Record<string, string> | undefined;
  if (labels) {
    const selector = encodeURIComponent(
      Object.entries(labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(","),
    );
    const list = await client.get(`/api/v1${ns}/pods?labelSelector=${selector}`);
    for (const p of (list?.items ?? []) as Json[]) {
      if (p.metadata.deletionTimestamp || ["Succeeded", "Failed"].includes(p.status?.phase)) continue;
      facts.pods.push({
        name: p.metadata.name,
        digest: p.metadata.annotations?.[DIGEST] ?? "missing",
        ready: ((p.status?.conditions ?? []) as Json[]).some((c) => c.type === "Ready" && c.status === "True"),
      });
    }
  }
  return facts;
}
