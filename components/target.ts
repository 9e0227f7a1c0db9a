// The one small interface every kind of runner implements. A new kind is one new file.
import type * as pulumi from "@pulumi/pulumi";
import type { FieldRef } from "./onePassword";
import type { RegistryKey } from "../lib/registryKey";

export interface TargetContext {
  /** The component's name; children are named `${name}-…`. */
  name: string;
  parent: pulumi.Resource;
  key: RegistryKey;
  /** The 1Password field the key came from (an in-cluster sync reads the same one). */
  source: FieldRef;
  /** Environment variable the jobs read, e.g. ZOT_CI_API_KEY. */
  envVar: string;
  /** What must succeed before any runner gets the key (e.g. the registry check). */
  dependsOn: pulumi.Resource[];
}

export interface TargetResult {
  /** Where the key went, e.g. "forgejo-runner/zot-ci-apikey" or "ringtail:/etc/…/zot-api-key.env". */
  location: pulumi.Output<string>;
  /** The digest of the key the runner now has: resolves only after the target's last step. */
  keyDigest: pulumi.Output<string>;
}

export interface RunnerTarget {
  readonly kind: string;
  deploy(ctx: TargetContext): TargetResult;
}
