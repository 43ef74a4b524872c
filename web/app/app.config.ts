export default defineAppConfig({
  brand: {
    name: 'DeepSpace',
    product: 'Workflows',
    icon: 'i-lucide-orbit'
  },
  ui: {
    colors: {
      primary: 'indigo',
      neutral: 'slate'
    }
  }
})
