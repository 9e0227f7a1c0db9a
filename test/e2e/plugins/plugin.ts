// What the two stand-in provider plugins share: a Pulumi ResourceProvider gRPC server on
// 127.0.0.1 (the port printed on stdout is the engine's handshake), property helpers for Pulumi's
// secret and unknown sentinels, and logging through the engine's Log RPC.
//
// STAND-INS: the real plugins (pulumi-command, pulumi-onepassword) are not served by the Go module
// proxy here. These implement exactly what runner-secrets uses; see command.ts / onepassword.ts.
/* eslint-disable @typescript-eslint/no-require-imports */
import type * as grpcTypes from "@grpc/grpc-js";

const grpc = require("@grpc/grpc-js") as typeof grpcTypes;
const provproto = require("@pulumi/pulumi/proto/provider_pb");
const provrpc = require("@pulumi/pulumi/proto/provider_grpc_pb");
const plugproto = require("@pulumi/pulumi/proto/plugin_pb");
const engrpc = require("@pulumi/pulumi/proto/engine_grpc_pb");
const engproto = require("@pulumi/pulumi/proto/engine_pb");
const emptyproto = require("google-protobuf/google/protobuf/empty_pb");
const structproto = require("google-protobuf/google/protobuf/struct_pb");

export { provproto };

/** Pulumi's wire sentinels (sdk/go/common/resource/sig and plugin.UnknownStringValue). */
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const SIG_KEY = "4dabf18193072939515e22adb298388d";

export type Props = Record<string, unknown>;

export function isSecret(v: unknown): v is { [SIG_KEY]: string; value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** The value with every secret wrapper removed (for running commands and comparing). */
export function reveal(v: unknown): unknown {
  if (isSecret(v)) return reveal(v.value);
  if (Array.isArray(v)) return v.map(reveal);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
  return v;
}

export function secret(v: unknown): unknown {
  return isSecret(v) ? v : { [SIG_KEY]: SECRET_SIG, value: v };
}

const fromStruct = (s: { toJavaScript(): Props } | undefined): Props => (s ? s.toJavaScript() : {});
const toStruct = (p: Props) => structproto.Struct.fromJavaScript(p);

/** Logs to the engine (as the real providers' status messages: ephemeral INFO lines). */
export class EngineLog {
  private client: { log(req: unknown, cb: (err: unknown) => void): void } | undefined;
  constructor(address: string | undefined) {
    if (address) this.client = new engrpc.EngineClient(address, grpc.credentials.createInsecure());
  }
  send(urn: string, message: string, severity: "info" | "warning" = "info", ephemeral = true): Promise<void> {
    const client = this.client;
    if (!client) return Promise.resolve();
    const req = new engproto.LogRequest();
    req.setSeverity(severity === "info" ? engproto.LogSeverity.INFO : engproto.LogSeverity.WARNING);
    req.setMessage(message);
    req.setUrn(urn);
    req.setEphemeral(ephemeral);
    return new Promise((resolve) => client.log(req, () => resolve()));
  }
}

export interface DiffResult {
  changes: boolean;
  replaces: string[];
  /** Top-level property → kind. */
  detailed: Record<string, "add" | "delete" | "update">;
}

export interface Provider {
  name: string;
  version: string;
  checkConfig?(news: Props): Props;
  configure?(args: Props, variables: Record<string, string>): void;
  check?(urn: string, olds: Props, news: Props): Props;
  diff?(urn: string, id: string, olds: Props, news: Props): DiffResult;
  create?(urn: string, props: Props): Promise<{ id: string; outs: Props }>;
  read?(id: string, props: Props, inputs: Props): { id: string; props: Props; inputs: Props };
  update?(urn: string, id: string, olds: Props, news: Props): Promise<Props>;
  delete?(urn: string, id: string, props: Props): Promise<void>;
  invoke?(token: string, args: Props): Promise<Props>;
}

type Callback = (err: unknown, value?: unknown) => void;

const fail = (cb: Callback, e: unknown) => cb({ code: grpc.status.UNKNOWN, details: e instanceof Error ? e.message : String(e) });

const KIND = { add: 0, delete: 2, update: 4 } as const;

/** Serves `p` and prints the port, as a plugin must. */
export function serve(p: Provider): void {
  const engine = new EngineLog(process.argv[2]);
  (p as { engine?: EngineLog }).engine = engine;
  const wrap = (f: (req: any) => unknown | Promise<unknown>) => (call: { request: any }, cb: Callback) => {
    Promise.resolve()
      .then(() => f(call.request))
      .then(
        (v) => cb(null, v),
        (e) => fail(cb, e),
      );
  };
  const impl = {
    getPluginInfo: wrap(() => {
      const r = new plugproto.PluginInfo();
      r.setVersion(p.version);
      return r;
    }),
    getSchema: wrap(() => {
      const r = new provproto.GetSchemaResponse();
      r.setSchema(JSON.stringify({ name: p.name, version: p.version }));
      return r;
    }),
    checkConfig: wrap((req) => {
      const r = new provproto.CheckResponse();
      r.setInputs(toStruct(p.checkConfig ? p.checkConfig(fromStruct(req.getNews())) : fromStruct(req.getNews())));
      return r;
    }),
    diffConfig: wrap(() => {
      const r = new provproto.DiffResponse();
      r.setChanges(provproto.DiffResponse.DiffChanges.DIFF_NONE);
      return r;
    }),
    configure: wrap((req) => {
      const vars: Record<string, string> = {};
      req.getVariablesMap().forEach((v: string, k: string) => {
        vars[k] = v;
      });
      p.configure?.(fromStruct(req.getArgs()), vars);
      const r = new provproto.ConfigureResponse();
      r.setAcceptsecrets(true);
      r.setAcceptresources(true);
      r.setSupportspreview(false);
      return r;
    }),
    check: wrap((req) => {
      const news = fromStruct(req.getNews());
      const r = new provproto.CheckResponse();
      r.setInputs(toStruct(p.check ? p.check(req.getUrn(), fromStruct(req.getOlds()), news) : news));
      return r;
    }),
    diff: wrap((req) => {
      const r = new provproto.DiffResponse();
      const d = p.diff!(req.getUrn(), req.getId(), fromStruct(req.getOlds()), fromStruct(req.getNews()));
      r.setChanges(d.changes ? provproto.DiffResponse.DiffChanges.DIFF_SOME : provproto.DiffResponse.DiffChanges.DIFF_NONE);
      r.setReplacesList(d.replaces);
      r.setHasdetaileddiff(true);
      const map = r.getDetaileddiffMap();
      for (const [k, kind] of Object.entries(d.detailed)) {
        const pd = new provproto.PropertyDiff();
        pd.setKind(d.replaces.includes(k) ? KIND[kind] + 1 : KIND[kind]);
        pd.setInputdiff(true);
        map.set(k, pd);
      }
      return r;
    }),
    create: wrap(async (req) => {
      const { id, outs } = await p.create!(req.getUrn(), fromStruct(req.getProperties()));
      const r = new provproto.CreateResponse();
      r.setId(id);
      r.setProperties(toStruct(outs));
      return r;
    }),
    read: wrap((req) => {
      const props = fromStruct(req.getProperties());
      const inputs = fromStruct(req.getInputs());
      const res = p.read ? p.read(req.getId(), props, inputs) : { id: req.getId(), props, inputs };
      const r = new provproto.ReadResponse();
      r.setId(res.id);
      r.setProperties(toStruct(res.props));
      r.setInputs(toStruct(res.inputs));
      return r;
    }),
    update: wrap(async (req) => {
      const outs = await p.update!(req.getUrn(), req.getId(), fromStruct(req.getOlds()), fromStruct(req.getNews()));
      const r = new provproto.UpdateResponse();
      r.setProperties(toStruct(outs));
      return r;
    }),
    delete: wrap(async (req) => {
      await p.delete?.(req.getUrn(), req.getId(), fromStruct(req.getProperties()));
      return new emptyproto.Empty();
    }),
    invoke: wrap(async (req) => {
      const r = new provproto.InvokeResponse();
      r.setReturn(toStruct(await p.invoke!(req.getTok(), fromStruct(req.getArgs()))));
      return r;
    }),
    cancel: wrap(() => new emptyproto.Empty()),
    attach: wrap(() => new emptyproto.Empty()),
  };
  const server = new grpc.Server({ "grpc.max_receive_message_length": 400 << 20 });
  server.addService(provrpc.ResourceProviderService, impl as never);
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    process.stdout.write(`${port}\n`);
  });
}
