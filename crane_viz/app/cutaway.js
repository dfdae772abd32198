// The live φ ≥ 0.5 cutaway, drawn by the browser with vtk.js (the copy Panel's VTK extension
// serves, so nothing comes from a CDN). The server sends one triangle mesh per update; views of
// the same `group` share one camera, so surrogate and reference turn together. Dragging turns
// the camera and the wheel zooms at any time, while the run plays.
export function render({ model }) {
  const vtk = window.vtk
  const box = document.createElement("div")
  box.className = "crane-cutaway"
  Object.assign(box.style, { width: "100%", height: "100%", position: "relative", touchAction: "none" })
  const caption = document.createElement("div")
  Object.assign(caption.style, { position: "absolute", left: "6px", top: "4px", font: "13px sans-serif",
                                 color: "#222", pointerEvents: "none", zIndex: 1 })
  if (!vtk) {
    caption.textContent = "3D view unavailable: vtk.js did not load"
    box.appendChild(caption)
    return box
  }
  const grw = vtk.Rendering.Misc.vtkGenericRenderWindow.newInstance({ background: [1, 1, 1] })
  grw.setContainer(box)
  grw.getInteractor().unbindEvents()  // turning is ours: below, and shared by the group
  box.appendChild(caption)
  const renderer = grw.getRenderer(), win = grw.getRenderWindow()
  const mesh = vtk.Common.DataModel.vtkPolyData.newInstance()
  const colours = vtk.Rendering.Core.vtkColorTransferFunction.newInstance()
  colours.applyColorMap(vtk.Rendering.Core.vtkColorTransferFunction.vtkColorMaps.getPresetByName("Viridis (matplotlib)"))
  colours.setMappingRange(0, 1)
  colours.updateRange()
  const mapper = vtk.Rendering.Core.vtkMapper.newInstance({ scalarRange: [0, 1], interpolateScalarsBeforeMapping: true })
  mapper.setLookupTable(colours)
  mapper.setInputData(mesh)
  const actor = vtk.Rendering.Core.vtkActor.newInstance()
  actor.setMapper(mapper)
  renderer.addActor(actor)

  const groups = window.craneCutawayGroups || (window.craneCutawayGroups = {})
  const group = groups[model.group] || (groups[model.group] = { camera: null, placed: false, views: new Set() })
  if (group.camera) renderer.setActiveCamera(group.camera)
  else group.camera = renderer.getActiveCamera()
  const view = { renderer, win }
  group.views.add(view)
  const camera = group.camera
  const renderAll = () => group.views.forEach((v) => { v.renderer.resetCameraClippingRange(); v.win.render() })

  let pending = false
  function draw() {
    pending = false
    caption.textContent = model.caption
    const xyz = model.xyz, value = model.value, polys = model.polys
    if (!xyz || !value || !polys) return
    const n = value.length
    mesh.getPoints().setData(Float32Array.from(xyz), 3)
    mesh.getPolys().setData(Uint32Array.from(polys))
    mesh.getPointData().setScalars(vtk.Common.Core.vtkDataArray.newInstance({ name: "phi", values: Float32Array.from(value) }))
    mesh.modified()
    if (!group.placed && n > 0) {  // the PNG renderer's view: isometric, turned 20° about z
      camera.setFocalPoint(0.5, 0.5, 0.5)
      camera.setPosition(0.5 + 1.05, 0.5 - 1.6, 0.5 + 1.1)
      camera.setViewUp(0, 0, 1)
      renderer.resetCamera()
      group.placed = true
    }
    renderAll()
  }
  const later = () => { if (!pending) { pending = true; requestAnimationFrame(draw) } }

  let drag = null
  box.addEventListener("pointerdown", (e) => { drag = [e.clientX, e.clientY]; box.setPointerCapture(e.pointerId) })
  box.addEventListener("pointerup", (e) => { drag = null; box.releasePointerCapture(e.pointerId) })
  box.addEventListener("pointermove", (e) => {
    if (!drag) return
    camera.azimuth(-(e.clientX - drag[0]) * 0.5)
    camera.elevation((e.clientY - drag[1]) * 0.5)
    camera.orthogonalizeViewUp()
    drag = [e.clientX, e.clientY]
    renderAll()
  })
  box.addEventListener("wheel", (e) => {
    e.preventDefault()
    camera.zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1)
    renderAll()
  }, { passive: false })

  model.on("xyz", later)
  model.on("polys", later)
  model.on("caption", later)
  model.on("after_layout", () => { grw.resize(); later() })
  model.on("resize", () => { grw.resize(); later() })
  model.on("remove", () => { group.views.delete(view); grw.delete() })
  return box
}
