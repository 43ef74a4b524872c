/**
 * The researcher app's sections: the sidebar and each section's placeholder page read
 * this one list. A section's `pending` text says what its issue will bring.
 * `AppSection` and `findSection` come from the shared shell layer (web/layers/shell).
 */
export const appSections = [
  {
    id: 'home',
    label: 'Home',
    to: '/',
    icon: 'i-lucide-house',
    title: 'Project home',
    pending: 'Your projects, their recent runs and spend arrive here with the project home issue.'
  },
  {
    id: 'chat',
    label: 'Chat',
    to: '/chat',
    icon: 'i-lucide-message-square',
    title: 'Chat',
    pending: 'Chat with the project’s models — each conversation a one-step workflow streamed from the gateway — arrives with the chat issue.'
  },
  {
    id: 'workflows',
    label: 'Workflows',
    to: '/workflows',
    icon: 'i-lucide-workflow',
    title: 'Workflows',
    pending: 'The workflow designer and the run view arrive with the workflow engine issue.'
  },
  {
    id: 'knowledge',
    label: 'Knowledge',
    to: '/knowledge',
    icon: 'i-lucide-library',
    title: 'Knowledge base',
    pending: 'Uploading documents and searching the project’s knowledge base arrive with the RAG issue.'
  },
  {
    id: 'usage',
    label: 'Usage',
    to: '/usage',
    icon: 'i-lucide-chart-column',
    title: 'Usage & cost',
    pending: 'Token usage and cost per project, model and workflow arrive with the billing issue.'
  }
] as const satisfies readonly AppSection[]

export type AppSectionId = (typeof appSections)[number]['id']
