// The key in 1Password now, read the way the stack's config says (Connect over HTTP, or the `op`
// CLI for a service account or the desktop app). The caller keeps it in memory and compares digests.
import { execFile } from "node:child_process";
import type { GetItemResult } from "@1password/pulumi-onepassword";
import { selectField } from "../../components/onePassword";
import type { OnePasswordConfig } from "../../lib/config";
import { type ConnectItem, providerItem } from "../../lib/connectItem";

type Json = Record<string, any>;

async function connectGet(base: string, token: string, path: string): Promise<unknown> {
  const res = await fetch(`${base.replace(/\/+$/, "")}${path}`, {
    headers: { authorization: `Bearer ${token}`, accept: "application/json" },
    signal: AbortSignal.timeout(15_000),
    redirect: "error",
  });
  const body = (await res.json().catch(() => ({}))) as Json;
  if (!res.ok) throw new Error(`1Password Connect ${path.split("?")[0]}: HTTP ${res.status} ${String(body.message ?? "")}`.trim());
  return body;
}

const titleFilter = (t: string) => `filter=${encodeURIComponent(`title eq "${t}"`)}`;

async function viaConnect(op: OnePasswordConfig, token: string, url: string): Promise<string> {
  const vaults = (await connectGet(url, token, `/v1/vaults?${titleFilter(op.vault)}`)) as Json[];
  const vault = /^[a-z0-9]{26}$/.test(op.vault) ? { id: op.vault } : vaults[0];
  if (!vault) throw new Error(`1Password vault "${op.vault}" not found`);
  const items = (await connectGet(url, token, `/v1/vaults/${vault.id}/items?${titleFilter(op.item)}`)) as Json[];
  if (!items[0]) throw new Error(`1Password item "${op.item}" not found in vault "${op.vault}"`);
  const item = (await connectGet(url, token, `/v1/vaults/${vault.id}/items/${items[0].id}`)) as ConnectItem;
  // The program's own field choice (and its errors), on the item as the provider would return it.
  return selectField(providerItem(item) as unknown as GetItemResult, op);
}

function viaCli(op: OnePasswordConfig, token: string | undefined): Promise<string> {
  const ref = `op://${op.vault}/${op.item}/${op.section ? `${op.section}/` : ""}${op.field}`;
  const args = ["read", "--no-newline", ref, ...(op.mode === "desktop" && op.account ? ["--account", op.account] : [])];
  const env = { ...process.env, ...(token && op.mode === "serviceAccount" ? { OP_SERVICE_ACCOUNT_TOKEN: token } : {}) };
  return new Promise((resolve, reject) =>
    execFile(op.opCliPath ?? "op", args, { env, encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`op read ${ref} failed: ${stderr.trim().split("\n")[0] || err.message}`));
      else resolve(stdout);
    }),
  );
}

/** The key 1Password holds now: for comparing digests in memory, never to print. */
export async function onePasswordKey(op: OnePasswordConfig, token: string | undefined): Promise<string> {
  if (op.mode === "connect") {
    const url = op.connectUrl ?? process.env.OP_CONNECT_HOST;
    const t = token ?? process.env.OP_CONNECT_TOKEN;
    if (!url || !t) throw new Error("Connect mode needs onePassword.connectUrl (or OP_CONNECT_HOST) and a token");
    return viaConnect(op, t, url);
  }
  return viaCli(op, token);
}
