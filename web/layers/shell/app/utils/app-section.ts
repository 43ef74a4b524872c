/**
 * One section of an app: a sidebar entry and its placeholder page. Every app that extends
 * this layer lists its own sections as `appSections` (and their ids as `AppSectionId`) in
 * its `app/utils/sections.ts`; the default layout's sidebar and `findSection` read that list.
 */
export interface AppSection {
  id: string
  label: string
  to: string
  icon: string
  title: string
  pending: string
}

export function findSection(id: AppSectionId): AppSection {
  const section = appSections.find(s => s.id === id)
  if (!section) throw new Error(`Unknown section ${id}`)
  return section
}
