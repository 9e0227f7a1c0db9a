// STAND-IN for the `onepassword` provider plugin (real: 1Password/pulumi-onepassword v1.1.3, a
// bridge of terraform-provider-onepassword v2.1.2; the Go module proxy here does not serve it).
// Implements only what runner-secrets uses: the provider configuration and the
// `onepassword:index/getItem:getItem` invoke, in Connect mode, following the real code
// (the provider's Configure checks; the item data source's reads through connect-sdk-go):
//   - config url + token, else OP_CONNECT_HOST / OP_CONNECT_TOKEN; Connect mixed with a service
//     account token or an account is an error; the other modes are refused (stand-in limit).
//   - getItem {vault, title | uuid}: a vault that is not a 26-character id is looked up with
//     GET /v1/vaults?filter=title eq "<vault>"; the item by title with
//     GET /v1/vaults/{v}/items?filter=title eq "<title>" then GET /v1/vaults/{v}/items/{id};
//     `Authorization: Bearer <token>`, User-Agent "op" (the real plugin's, sic).
//   - the result as the bridge maps it: id "vaults/<v>/items/<i>", uuid, vault (its id), title,
//     category lower-cased, the built-in fields by id (username, password, credential, noteValue…)
//     only when present, and sections [{id, label, fields: [{id, label, purpose, type, value}]}].
//     Like the real invoke result, it carries no secret markers.
//   - an item that is not there: `Client Error: Unable to read item, got error: Found 0 item(s)
//     in vault "<v>" with title "<t>"`.
import { type ConnectItem, providerItem } from "../../../lib/connectItem";
import { reveal, serve, type Props, type Provider } from "./plugin";

const idRe = /^[a-z0-9]{26}$/;

class OnePasswordProvider implements Provider {
  name = "onepassword";
  version = "1.1.3";
  private url?: string;
  private token?: string;

  configure(args: Props, vars: Record<string, string>): void {
    const get = (k: string) => (reveal(args[k]) as string | undefined) ?? vars[`onepassword:config:${k}`];
    const url = get("url") || process.env.OP_CONNECT_HOST;
    const token = get("token") || process.env.OP_CONNECT_TOKEN;
    const serviceAccountToken = get("serviceAccountToken") || process.env.OP_SERVICE_ACCOUNT_TOKEN;
    const account = get("account") || process.env.OP_ACCOUNT;
    if ((url || token) && (serviceAccountToken || account)) {
      throw new Error('Either Connect credentials ("token" and "url") or "serviceAccountToken" or "account" can be set');
    }
    if (!url || !token) throw new Error("onepassword stand-in: only Connect mode is implemented (set url and token)");
    this.url = url.replace(/\/+$/, "");
    this.token = token;
  }

  private async get<T>(p: string): Promise<T> {
    const res = await fetch(`${this.url}${p}`, {
      headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json", "User-Agent": "op" },
    });
    const body = (await res.json().catch(() => ({}))) as T & { status?: number; message?: string };
    if (!res.ok) throw new Error(`status ${body.status ?? res.status}: ${body.message ?? res.statusText}`);
    return body;
  }

  private async vaultId(vault: string): Promise<string> {
    if (idRe.test(vault)) return vault;
    const found = await this.get<{ id: string }[]>(`/v1/vaults?filter=${encodeURIComponent(`title eq "${vault}"`)}`);
    if (found.length !== 1) throw new Error(`Found ${found.length} vault(s) for vault identifier "${vault}"`);
    return found[0].id;
  }

  async invoke(token: string, args: Props): Promise<Props> {
    if (token !== "onepassword:index/getItem:getItem") throw new Error(`onepassword stand-in: unknown function ${token}`);
    const vault = String(args.vault);
    try {
      const v = await this.vaultId(vault);
      let item: ConnectItem;
      if (args.uuid) {
        item = await this.get<ConnectItem>(`/v1/vaults/${v}/items/${args.uuid}`);
      } else {
        const title = String(args.title);
        const list = await this.get<{ id: string }[]>(`/v1/vaults/${v}/items?filter=${encodeURIComponent(`title eq "${title}"`)}`);
        if (list.length !== 1) throw new Error(`Found ${list.length} item(s) in vault "${v}" with title "${title}"`);
        item = await this.get<ConnectItem>(`/v1/vaults/${v}/items/${list[0].id}`);
      }
      return providerItem(item) as Props;
    } catch (e) {
      throw new Error(`Client Error: Unable to read item, got error: ${(e as Error).message}`);
    }
  }
}

serve(new OnePasswordProvider());
