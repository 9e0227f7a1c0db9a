// A 1Password Connect item as the onepassword provider's getItem returns it (terraform-provider-
// onepassword v2.1.2, Connect mode): built-in fields by id only when present, purpose-marked fields
// as username/password/noteValue, everything in a section grouped under that section. Used by the
// e2e stand-in plugin and by `verify`, so both pick a field exactly as the program does.

export interface ConnectField {
  id: string;
  label?: string;
  type?: string;
  purpose?: string;
  value?: string;
  section?: { id: string };
}

export interface ConnectItem {
  id: string;
  title: string;
  category: string;
  vault: { id: string };
  sections?: { id: string; label?: string }[];
  fields?: ConnectField[];
}

const builtIn: Record<string, string> = {
  username: "username",
  password: "password",
  credential: "credential",
  notesPlain: "noteValue",
  hostname: "hostname",
  database: "database",
  port: "port",
  type: "type",
};

export function providerItem(item: ConnectItem): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: `vaults/${item.vault.id}/items/${item.id}`,
    uuid: item.id,
    vault: item.vault.id,
    title: item.title,
    category: item.category.toLowerCase(),
  };
  const sections = (item.sections ?? []).map((s) => ({
    id: s.id,
    label: s.label ?? "",
    fields: [] as Record<string, unknown>[],
    files: [] as Record<string, unknown>[],
  }));
  for (const f of item.fields ?? []) {
    const section = f.section && sections.find((s) => s.id === f.section?.id);
    if (section) {
      section.fields.push({ id: f.id, label: f.label ?? "", purpose: f.purpose ?? "", type: f.type ?? "", value: f.value ?? "" });
    } else if (f.purpose === "USERNAME") out.username = f.value;
    else if (f.purpose === "PASSWORD") out.password = f.value;
    else if (f.purpose === "NOTES") out.noteValue = f.value;
    else if (builtIn[f.id] && f.value !== undefined) out[builtIn[f.id]] = f.value;
  }
  out.sections = sections;
  return out;
}
