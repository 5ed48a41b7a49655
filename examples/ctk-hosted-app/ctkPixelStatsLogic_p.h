// The application: for each input object it reads through the host's GetData, the pixel value range
// (DCMTK); one CSV row per object, written to the host's output location and announced to the host with
// NotifyDataAvailable(lastData=true); then it reports COMPLETED. No GUI: it runs headless.
#ifndef CTKPIXELSTATSLOGIC_P_H
#define CTKPIXELSTATSLOGIC_P_H

#include <ctkDicomAbstractApp.h>

class ctkPluginContext;

class ctkPixelStatsLogic : public ctkDicomAbstractApp
{
  Q_OBJECT
  Q_INTERFACES(ctkDicomAppInterface)

public:
  explicit ctkPixelStatsLogic(ctkPluginContext* context);

  /// Reports IDLE: only once registered as the ctkDicomAppInterface service, since CTK's application server
  /// answers SetState only from then on (CTK's example reports IDLE in its constructor, before that, and a
  /// host that asks for INPROGRESS at once gets no answer at all).
  void announceReady();

  // ctkDicomAppInterface
  bool bringToFront(const QRect& requestedScreenArea) override;

protected Q_SLOTS:
  void onStartProgress();
  void onCancelProgress();
  void onExitHostedApp();
  void onDataAvailable();

private:
  void process();
  void report(ctkDicomAppHosting::StatusType type, const QString& code, const QString& meaning);
  QString outputFolder();
  bool Processed;
};

#endif
