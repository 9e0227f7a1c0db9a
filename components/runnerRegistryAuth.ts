// The component both stacks instantiate: key from 1Password → registry check → the chosen target.
import * as pulumi from "@pulumi/pulumi";
import * as onepassword from "@1password/pulumi-onepassword";
import { DEFAULT_ENV_VAR, type OnePasswordConfig, type RegistryCheckConfig } from "../lib/config";
import { type FieldRef, providerArgs, readKey } from "./onePassword";
import { registryGate } from "./registryGate";
import type { RunnerTarget } from "./target";

export interface RunnerRegistryAuthArgs {
  /** Where the key lives in 1Password and how to reach 1Password. */
  onePassword: OnePasswordConfig;
  /** Service account or Connect token; otherwise the provider reads its environment variables. */
  onePasswordToken?: pulumi.Input<string>;
  /** The variable CI jobs read (default DEFAULT_ENV_VAR, ZOT_CI_API_KEY). */
  envVar?: string;
  registryCheck: RegistryCheckConfig;
  /** Exactly one runner: KubernetesTarget or NixosTarget. */
  target: RunnerTarget;
}

export class RunnerRegistryAuth extends pulumi.ComponentResource {
  /** Where the key went: namespace/secret or host:path. */
  readonly location: pulumi.Output<string>;
  /** Short one-way digest of the key the runner got (only once it got it): compare it across stacks. */
  readonly keyDigest: pulumi.Output<string>;
  readonly itemId: pulumi.Output<string>;
  readonly targetKind: string;

  constructor(name: string, args: RunnerRegistryAuthArgs, opts?: pulumi.ComponentResourceOptions) {
    super("runner-secrets:index:RunnerRegistryAuth", name, {}, opts);

    const op = args.onePassword;
    const token = args.onePasswordToken === undefined ? undefined : pulumi.secret(args.onePasswordToken);
    const provider = new onepassword.Provider(`${name}-1password`, providerArgs(op, token), { parent: this });
    const source: FieldRef = { vault: op.vault, item: op.item, field: op.field, section: op.section };
    const { key, itemId } = readKey(source, { provider, parent: this });

    const checked = registryGate(name, args.registryCheck, key, this);
    const result = args.target.deploy({
      name,
      parent: this,
      key,
      source,
      envVar: args.envVar ?? DEFAULT_ENV_VAR,
      dependsOn: checked,
    });

    this.location = result.location;
    this.keyDigest = result.keyDigest;
    this.itemId = itemId;
    this.targetKind = args.target.kind;
    this.registerOutputs({ location: this.location, keyDigest: this.keyDigest, itemId: this.itemId });
  }
}
