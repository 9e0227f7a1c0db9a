// A stand-in for the 1Password Connect server (which cannot run here), for end-to-end tests.
//
// It serves, on 127.0.0.1, the read-only part of the Connect REST API that its two real clients
// call: the 1Password Pulumi provider and External Secrets Operator's onepassword provider, both
// built on connect-sdk-go (GetVault/GetVaultsByTitle, GetItem/GetItemByUUID, GetItemsByTitle,
// GetItems):
//
//   GET /v1/vaults[?filter=title eq "<name>"]                      array of Vault
//   GET /v1/vaults/{vaultUuid}                                     Vault
//   GET /v1/vaults/{vaultUuid}/items[?filter=title eq "<title>"]   array of Item (summaries)
//   GET /v1/vaults/{vaultUuid}/items/{itemUuid}                    FullItem
//   GET /health, GET /heartbeat                                    no token needed
//
// Shapes, status codes and error bodies ({status, message}) follow the Connect OpenAPI spec,
// docs/openapi/spec.yaml in github.com/1Password/connect (spec version 1.7.1): list endpoints
// return Item without sections/fields, the item endpoint returns FullItem; ids are 26 characters
// of [a-z0-9] (the spec's pattern, and connect-sdk-go's isValidUUID, which decides whether a
// vault/item argument is an id or a title). Fields that are not in a section get the built-in ids
// 1Password uses ("credential", "password", "username", "notesPlain"): the Pulumi provider reads
// an API credential's value from the field whose id is "credential".
//
// What it does not do: writes (POST/PUT/PATCH/DELETE answer 405), files and documents, the
// activity and metrics endpoints, filters other than `title eq "…"` (vaults also `name eq "…"`),
// tags, URLs, favourites, archived/trashed items, token scopes and 403s, value generation and
// entropy, real JWT tokens. Items are changed only through the test API below.

import { randomBytes, randomInt } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** Field types of the spec's Field schema. */
export type ConnectFieldType = "STRING" | "EMAIL" | "CONCEALED" | "URL" | "TOTP" | "DATE" | "MONTH_YEAR" | "MENU";
export type ConnectFieldPurpose = "USERNAME" | "PASSWORD" | "NOTES";

export interface ConnectField {
  label: string;
  value: string;
  /** Default: CONCEALED for purpose PASSWORD and for top-level "password"/"credential", else STRING. */
  type?: ConnectFieldType;
  purpose?: ConnectFieldPurpose;
  /** Label of the section the field is in; absent for a top-level (built-in) field. */
  section?: string;
  /** Field id; by default a built-in id (see header) or a random 26-character one. */
  id?: string;
}

export interface ConnectRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Raw query string, without "?" ("" if none). */
  query: string;
  status: number;
  /** When the request arrived (ms since the epoch). */
  time: number;
}

export interface ConnectStandIn {
  /** http://127.0.0.1:<port> (no trailing slash: connect-sdk-go appends "/v1/…"). */
  url: string;
  /** The accepted bearer token. */
  token: string;
  /** Adds a vault; returns its id. Throws if a vault of that name exists. */
  addVault(name: string): string;
  /** Creates or replaces the item of that title; the id is stable on replace (version bumps). */
  putItem(vault: string, title: string, fields: ConnectField[], category?: string): string;
  /** Rotation: the field's value changes, the item's version increments, updatedAt moves on. */
  setField(vault: string, title: string, label: string, value: string): void;
  removeItem(vault: string, title: string): void;
  itemId(vault: string, title: string): string;
  /** Every response is delayed by this many milliseconds. */
  delayMs: number;
  /** When true every request gets 503 {status, message}. */
  down: boolean;
  /** Requests answered so far, oldest first; headers (so the token) are never recorded. */
  requests(): ConnectRequest[];
  close(): Promise<void>;
}

const CONNECT_VERSION = "1.7.1";
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const ID_RE = /^[a-z0-9]{26}$/;
const CATEGORIES = new Set([
  "LOGIN",
  "PASSWORD",
  "API_CREDENTIAL",
  "SERVER",
  "DATABASE",
  "CREDIT_CARD",
  "MEMBERSHIP",
  "PASSPORT",
  "SOFTWARE_LICENSE",
  "OUTDOOR_LICENSE",
  "SECURE_NOTE",
  "WIRELESS_ROUTER",
  "BANK_ACCOUNT",
  "DRIVER_LICENSE",
  "IDENTITY",
  "REWARD_PROGRAM",
  "DOCUMENT",
  "EMAIL_ACCOUNT",
  "SOCIAL_SECURITY_NUMBER",
  "MEDICAL_RECORD",
  "SSH_KEY",
  "CUSTOM",
]);

function newId(): string {
  let id = "";
  for (let i = 0; i < 26; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return id;
}

interface StoredField {
  id: string;
  type: ConnectFieldType;
  purpose?: ConnectFieldPurpose;
  label: string;
  value: string;
  sectionId?: string;
}

interface StoredItem {
  id: string;
  title: string;
  category: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  sections: { id: string; label: string }[];
  fields: StoredField[];
}

interface StoredVault {
  id: string;
  name: string;
  attributeVersion: number;
  contentVersion: number;
  createdAt: string;
  updatedAt: string;
  items: Map<string, StoredItem>; // by title
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Parses `<attr> eq "<value>"` (SCIM; attribute and operator case-insensitive). */
function parseEqFilter(filter: string, attrs: string[]): string {
  const m = /^\s*([A-Za-z]+)\s+eq\s+"(.*)"\s*$/is.exec(filter);
  if (!m || !attrs.includes(m[1].toLowerCase())) {
    const forms = attrs.map((a) => `${a} eq "<value>"`).join(" or ");
    throw new HttpError(400, `Invalid filter ${JSON.stringify(filter)}: the stand-in supports only ${forms}`);
  }
  return m[2];
}

export async function startConnect(opts: { token?: string; port?: number } = {}): Promise<ConnectStandIn> {
  const token = opts.token ?? randomBytes(24).toString("base64url");
  const editor = newId(); // lastEditedBy of every item
  const vaults: StoredVault[] = [];
  const log: ConnectRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let lastStamp = 0;

  /** ISO timestamp, strictly later than the previous one (so updatedAt always changes). */
  function stamp(): string {
    lastStamp = Math.max(Date.now(), lastStamp + 1);
    return new Date(lastStamp).toISOString();
  }

  function findVault(nameOrId: string): StoredVault {
    const v = vaults.find((x) => x.name === nameOrId) ?? vaults.find((x) => x.id === nameOrId);
    if (!v) throw new Error(`connect stand-in: no vault ${JSON.stringify(nameOrId)}`);
    return v;
  }

  function findItem(vault: string, title: string): { v: StoredVault; item: StoredItem } {
    const v = findVault(vault);
    const item = v.items.get(title);
    if (!item) throw new Error(`connect stand-in: no item ${JSON.stringify(title)} in vault ${JSON.stringify(v.name)}`);
    return { v, item };
  }

  function touchVault(v: StoredVault): void {
    v.contentVersion++;
    v.updatedAt = stamp();
  }

  function builtinId(f: ConnectField, category: string): string | undefined {
    if (f.section !== undefined) return undefined;
    if (f.purpose === "USERNAME") return "username";
    if (f.purpose === "PASSWORD") return "password";
    if (f.purpose === "NOTES") return "notesPlain";
    if (f.label === "credential" && category === "API_CREDENTIAL") return "credential";
    if (f.label === "username" || f.label === "password" || f.label === "notesPlain") return f.label;
    return undefined;
  }

  // ---- JSON shapes (spec: Vault, Item, FullItem) ----

  const vaultJson = (v: StoredVault) => ({
    id: v.id,
    name: v.name,
    attributeVersion: v.attributeVersion,
    contentVersion: v.contentVersion,
    items: v.items.size,
    type: "USER_CREATED",
    createdAt: v.createdAt,
    updatedAt: v.updatedAt,
  });

  const itemSummaryJson = (v: StoredVault, i: StoredItem) => ({
    id: i.id,
    title: i.title,
    version: i.version,
    vault: { id: v.id },
    category: i.category,
    lastEditedBy: editor,
    createdAt: i.createdAt,
    updatedAt: i.updatedAt,
  });

  const fullItemJson = (v: StoredVault, i: StoredItem) => ({
    ...itemSummaryJson(v, i),
    sections: i.sections.map((s) => ({ id: s.id, label: s.label })),
    fields: i.fields.map((f) => ({
      id: f.id,
      ...(f.sectionId !== undefined ? { section: { id: f.sectionId } } : {}),
      type: f.type,
      ...(f.purpose !== undefined ? { purpose: f.purpose } : {}),
      label: f.label,
      value: f.value,
    })),
  });

  // ---- routing ----

  function vaultByPathId(id: string): StoredVault {
    if (!ID_RE.test(id)) throw new HttpError(400, "Invalid Vault UUID");
    const v = vaults.find((x) => x.id === id);
    if (!v) throw new HttpError(404, `vault ${id} not found`);
    return v;
  }

  function route(
    method: string,
    path: string,
    params: URLSearchParams,
    auth: string | undefined,
  ): { status: number; body: unknown; text?: string } {
    if (path === "/heartbeat" && method === "GET") return { status: 200, body: undefined, text: "." };
    if (path === "/health" && method === "GET") {
      return {
        status: 200,
        body: {
          name: "1Password Connect API",
          version: CONNECT_VERSION,
          dependencies: [{ service: "sqlite", status: "ACTIVE", message: "stand-in" }],
        },
      };
    }
    if (path !== "/v1" && !path.startsWith("/v1/")) throw new HttpError(404, "Not Found");

    const m = /^Bearer\s+(.+)$/i.exec(auth ?? "");
    if (!m || m[1].trim() !== token) throw new HttpError(401, "Invalid bearer token");

    const parts = path.split("/").slice(2); // after "", "v1"
    if (parts[0] !== "vaults" || parts.length > 4 || (parts.length >= 3 && parts[2] !== "items")) {
      if (parts[0] === "vaults" && parts[2] === "items" && parts[4] === "files") {
        throw new HttpError(501, "files are not supported by the Connect stand-in");
      }
      throw new HttpError(404, "Not Found");
    }
    if (method !== "GET") throw new HttpError(405, `${method} is not supported: the Connect stand-in is read-only`);

    const filter = params.get("filter");
    if (parts.length === 1) {
      let list = vaults;
      if (filter !== null) {
        const name = parseEqFilter(filter, ["title", "name"]);
        list = vaults.filter((v) => v.name === name);
      }
      return { status: 200, body: list.map(vaultJson) };
    }
    const v = vaultByPathId(parts[1]);
    if (parts.length === 2) return { status: 200, body: vaultJson(v) };
    if (parts.length === 3) {
      let items = [...v.items.values()];
      if (filter !== null) {
        const title = parseEqFilter(filter, ["title"]);
        items = items.filter((i) => i.title === title);
      }
      return { status: 200, body: items.map((i) => itemSummaryJson(v, i)) };
    }
    const itemId = parts[3];
    if (!ID_RE.test(itemId)) throw new HttpError(400, "Invalid Item UUID");
    const item = [...v.items.values()].find((i) => i.id === itemId);
    if (!item) throw new HttpError(404, `item ${itemId} not found`);
    return { status: 200, body: fullItemJson(v, item) };
  }

  const server = http.createServer((req, res) => {
    const time = Date.now();
    const method = req.method ?? "GET";
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = q < 0 ? "" : rawUrl.slice(q + 1);

    let status: number;
    let payload: string;
    let contentType = "application/json";
    try {
      if (standIn.down) throw new HttpError(503, "1Password Connect is unavailable (stand-in is down)");
      const r = route(method, path, new URLSearchParams(query), req.headers.authorization);
      status = r.status;
      if (r.text !== undefined) {
        payload = r.text;
        contentType = "text/plain; charset=utf-8";
      } else {
        payload = JSON.stringify(r.body);
      }
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, `stand-in error: ${(err as Error)?.message ?? String(err)}`);
      status = e.status;
      payload = JSON.stringify({ status: e.status, message: e.message });
    }

    const send = () => {
      if (res.destroyed || res.writableEnded) return;
      log.push({ method, path, query, status, time });
      res.writeHead(status, {
        "Content-Type": contentType,
        "Content-Length": Buffer.byteLength(payload),
        "1Password-Connect-Version": CONNECT_VERSION,
      });
      res.end(payload);
    };
    req.resume(); // discard any body
    const delay = standIn.delayMs;
    if (delay > 0) {
      const t = setTimeout(() => {
        timers.delete(t);
        send();
      }, delay);
      timers.add(t);
    } else {
      send();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const standIn: ConnectStandIn = {
    url: `http://127.0.0.1:${port}`,
    token,
    delayMs: 0,
    down: false,

    addVault(name) {
      if (vaults.some((v) => v.name === name)) throw new Error(`connect stand-in: vault ${JSON.stringify(name)} exists`);
      const now = stamp();
      const v: StoredVault = {
        id: newId(),
        name,
        attributeVersion: 1,
        contentVersion: 1,
        createdAt: now,
        updatedAt: now,
        items: new Map(),
      };
      vaults.push(v);
      return v.id;
    },

    putItem(vault, title, fields, category = "API_CREDENTIAL") {
      if (!CATEGORIES.has(category)) throw new Error(`connect stand-in: unknown item category ${JSON.stringify(category)}`);
      const v = findVault(vault);
      const old = v.items.get(title);

      // Sections and field ids are kept across a replace when labels match.
      const sections: { id: string; label: string }[] = [];
      const sectionFor = (label: string) => {
        let s = sections.find((x) => x.label === label);
        if (!s) {
          s = { id: old?.sections.find((x) => x.label === label)?.id ?? newId(), label };
          sections.push(s);
        }
        return s.id;
      };
      const used = new Set<string>();
      const stored: StoredField[] = fields.map((f) => {
        const sectionId = f.section !== undefined ? sectionFor(f.section) : undefined;
        const prev = old?.fields.find((o) => o.label === f.label && o.sectionId === sectionId && !used.has(o.id));
        let id = f.id ?? prev?.id ?? builtinId(f, category);
        if (id === undefined || used.has(id)) id = newId();
        used.add(id);
        const concealed = f.purpose === "PASSWORD" || (f.section === undefined && (f.label === "password" || f.label === "credential"));
        return { id, type: f.type ?? (concealed ? "CONCEALED" : "STRING"), purpose: f.purpose, label: f.label, value: f.value, sectionId };
      });

      const now = stamp();
      const item: StoredItem = {
        id: old?.id ?? newId(),
        title,
        category,
        version: old ? old.version + 1 : 1,
        createdAt: old?.createdAt ?? now,
        updatedAt: now,
        sections,
        fields: stored,
      };
      v.items.set(title, item);
      touchVault(v);
      return item.id;
    },

    setField(vault, title, label, value) {
      const { v, item } = findItem(vault, title);
      const matches = item.fields.filter((f) => f.label === label);
      if (matches.length !== 1) {
        throw new Error(`connect stand-in: item ${JSON.stringify(title)} has ${matches.length} fields labelled ${JSON.stringify(label)}`);
      }
      matches[0].value = value;
      item.version++;
      item.updatedAt = stamp();
      touchVault(v);
    },

    removeItem(vault, title) {
      const { v } = findItem(vault, title);
      v.items.delete(title);
      touchVault(v);
    },

    itemId(vault, title) {
      return findItem(vault, title).item.id;
    },

    requests() {
      return log.map((r) => ({ ...r }));
    },

    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
  return standIn;
}
