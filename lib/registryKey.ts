// The registry key as the rest of the program sees it: a secret Output, its one-way digest, and the
// single rendering of it as an environment-file line.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";

/** A key read from 1Password. `value` is always a Pulumi secret; `digest` is safe to show. */
export interface RegistryKey {
  readonly value: pulumi.Output<string>;
  /** Short SHA-256 of the key: changes when the key changes, reveals nothing about it. */
  readonly digest: pulumi.Output<string>;
}

/** Wraps a plain Output (e.g. from an invoke that dropped secretness) as a RegistryKey. */
export function registryKey(plain: pulumi.Output<string>): RegistryKey {
  const value = pulumi.secret(plain);
  // The digest is derived from the secret, so Pulumi would mark it secret too; it is one-way, so
  // unsecret it on purpose: operators compare it across stacks after a rotation.
  const digest = pulumi.unsecret(value.apply(keyDigest));
  return { value, digest };
}

/** First 16 hex digits of SHA-256 of the key (the same ESO's template computes with sha256sum). */
export function keyDigest(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex").slice(0, 16);
}

export class UnsafeKeyError extends Error {}

/**
 * Why a key cannot be written to an env file without changing its meaning, or undefined.
 * A key with other characters than plainValueRe is single-quoted, which systemd's EnvironmentFile=
 * and godotenv both read literally, so only characters that end the quote or the line are refused.
 */
export function unsafeKeyReason(key: string): string | undefined {
  if (key.length === 0) return "the key is empty";
  if (/[\u0000-\u001f\u007f]/.test(key)) return "the key contains a control character (newline, NUL, tab, …)";
  if (key.includes("'")) return "the key contains a single quote";
  if (key !== key.trim()) return "the key has leading or trailing whitespace";
  return undefined;
}

// Characters that systemd and godotenv both read literally outside quotes (no $, \, #, quotes, spaces).
const plainValueRe = /^[A-Za-z0-9_.+/=:@%,~^-]+$/;

/**
 * `NAME=key` (or `NAME='key'` when the key has other characters) plus newline; throws
 * UnsafeKeyError (without the key) rather than mangle it.
 */
export function envFileLine(name: string, key: string): string {
  const reason = unsafeKeyReason(key);
  if (reason) throw new UnsafeKeyError(`refusing to write ${name}: ${reason}; fix the value in 1Password`);
  return plainValueRe.test(key) ? `${name}=${key}\n` : `${name}='${key}'\n`;
}
