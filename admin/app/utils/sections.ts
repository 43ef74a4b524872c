/**
 * The admin console's sections: the sidebar and each section's placeholder page read
 * this one list. A section's `pending` text says what its issue will bring.
 * `AppSection` and `findSection` come from the shared shell layer (web/layers/shell).
 */
export const appSections = [
  {
    id: 'overview',
    label: 'Overview',
    to: '/',
    icon: 'i-lucide-layout-dashboard',
    title: 'Overview',
    pending: 'Platform health, spend and open alerts at a glance arrive with the admin overview issue.'
  },
  {
    id: 'users',
    label: 'Users',
    to: '/users',
    icon: 'i-lucide-users',
    title: 'Users',
    pending: 'Inviting, suspending and assigning roles to users arrive with the accounts issue.'
  },
  {
    id: 'organizations',
    label: 'Organizations',
    to: '/organizations',
    icon: 'i-lucide-building-2',
    title: 'Organizations',
    pending: 'Organizations, their members and their wallets arrive with the accounts issue.'
  },
  {
    id: 'projects',
    label: 'Projects',
    to: '/projects',
    icon: 'i-lucide-folder-kanban',
    title: 'Projects',
    pending: 'Every project across organizations, with its quotas and owners, arrives with the projects issue.'
  },
  {
    id: 'models',
    label: 'Models',
    to: '/models',
    icon: 'i-lucide-cpu',
    title: 'Models',
    pending: 'The model catalogue and its upstream routes arrive with the model gateway issue.'
  },
  {
    id: 'pricing',
    label: 'Pricing',
    to: '/pricing',
    icon: 'i-lucide-tags',
    title: 'Pricing',
    pending: 'Per-model token prices and their effective dates arrive with the billing issue.'
  },
  {
    id: 'billing',
    label: 'Billing',
    to: '/billing',
    icon: 'i-lucide-wallet',
    title: 'Billing',
    pending: 'Wallets, transactions, holds and usage arrive with the billing issue.'
  },
  {
    id: 'audit',
    label: 'Audit',
    to: '/audit',
    icon: 'i-lucide-scroll-text',
    title: 'Audit log',
    pending: 'The searchable audit trail of who did what, and when, arrives with the audit issue.'
  },
  {
    id: 'policy',
    label: 'Policy',
    to: '/policy',
    icon: 'i-lucide-shield',
    title: 'Policy',
    pending: 'Risk controls — spend limits, model allow-lists and rate limits — arrive with the policy issue.'
  }
] as const satisfies readonly AppSection[]

export type AppSectionId = (typeof appSections)[number]['id']
