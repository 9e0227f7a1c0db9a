// 1Password: the explicitly configured provider, and the one field this program needs.
import * as pulumi from "@pulumi/pulumi";
import * as onepassword from "@1password/pulumi-onepassword";
import type { GetItemResult } from "@1password/pulumi-onepassword";
import type { OnePasswordConfig } from "../lib/config";
import { type RegistryKey, registryKey, unsafeKeyReason } from "../lib/registryKey";

/** Which field of which item: the same reference drives Pulumi's read and ESO's remoteRef. */
export interface FieldRef {
  vault: string;
  item: string;
  field: string;
  section?: string;
}

function describeRef(ref: FieldRef): string {
  const field = ref.section ? `field "${ref.field}" in section "${ref.section}"` : `field "${ref.field}"`;
  return `${field} of item "${ref.item}" in vault "${ref.vault}"`;
}

/**
 * Provider arguments for the configured mode. Credentials left out here are read by the provider
 * from its own environment variables (OP_SERVICE_ACCOUNT_TOKEN, OP_CONNECT_TOKEN, OP_ACCOUNT).
 */
export function providerArgs(cfg: OnePasswordConfig, token?: pulumi.Output<string>): onepassword.ProviderArgs {
  const common = cfg.opCliPath ? { opCliPath: cfg.opCliPath } : {};
  switch (cfg.mode) {
    case "serviceAccount":
      return { ...common, ...(token ? { serviceAccountToken: token } : {}) };
    case "connect":
      return { url: cfg.connectUrl, ...(token ? { token } : {}) };
    case "desktop":
      return { ...common, account: cfg.account };
  }
}

export class ItemFieldError extends Error {}

/** The configured field's value from an item, or an error that names vault, item and field. */
export function selectField(item: GetItemResult, ref: FieldRef): string {
  const where = describeRef(ref);
  let value: string | undefined;
  if (ref.section !== undefined) {
    const section = (item.sections ?? []).find((s) => s.label === ref.section);
    if (!section) {
      const labels = (item.sections ?? []).map((s) => `"${s.label}"`).join(", ") || "none";
      throw new ItemFieldError(
        `1Password: no section "${ref.section}" in item "${ref.item}" (vault "${ref.vault}"); its sections: ${labels}`,
      );
    }
    value = (section.fields ?? []).find((f) => f.label === ref.field)?.value;
  } else if (ref.field === "password" || ref.field === "credential") {
    value = item[ref.field];
  } else {
    const matches = (item.sections ?? []).flatMap((s) => (s.fields ?? []).filter((f) => f.label === ref.field));
    if (matches.length > 1)
      throw new ItemFieldError(`1Password: ${where} is ambiguous (${matches.length} fields have that label); set onePassword.section`);
    value = matches[0]?.value;
  }
  if (value === undefined)
    throw new ItemFieldError(`1Password: there is no ${where}; check runner-secrets:onePassword.field (and .section)`);
  if (value === "") throw new ItemFieldError(`1Password: ${where} is empty; put the zot API key there`);
  const unsafe = unsafeKeyReason(value);
  if (unsafe) throw new ItemFieldError(`1Password: ${where} cannot be used: ${unsafe}; fix the value in 1Password`);
  return value;
}

export interface KeyRead {
  key: RegistryKey;
  itemId: pulumi.Output<string>;
}

/**
 * Reads the field. The SDK's invoke drops the provider's secret marking (1.1.3), so the value is
 * wrapped as a secret right here, before anything else can see it.
 */
export function readKey(ref: FieldRef, opts: pulumi.InvokeOptions): KeyRead {
  // Reported against the component (its URN, no stack trace) when there is one.
  const against = (message: string) => (opts.parent ? new pulumi.ResourceError(message, opts.parent, true) : new ItemFieldError(message));
  const item = pulumi.output({ vault: ref.vault, title: ref.item }).apply((args) =>
    onepassword.getItem(args, opts).catch((err: unknown) => {
      // gRPC errors from the engine carry the provider's words in `details`.
      const e = err as { message?: string; details?: string };
      const cause = e?.details || e?.message || String(err);
      throw against(`1Password: could not read item "${ref.item}" in vault "${ref.vault}" (wanted ${describeRef(ref)}): ${cause}`);
    }),
  );
  const key = registryKey(
    item.apply((i) => {
      try {
        return selectField(i, ref);
      } catch (err) {
        throw err instanceof ItemFieldError ? against(err.message) : err;
      }
    }),
  );
  return { key, itemId: item.apply((i) => i.uuid || i.id) };
}
