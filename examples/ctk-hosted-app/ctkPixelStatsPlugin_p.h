// The plug-in activator: registers the application logic as the ctkDicomAppInterface service, which
// CTK's hosted-app plug-in serves as the ApplicationService at --applicationURL.
#ifndef CTKPIXELSTATSPLUGIN_P_H
#define CTKPIXELSTATSPLUGIN_P_H

#include <ctkPluginActivator.h>

class ctkPixelStatsLogic;

class ctkPixelStatsPlugin : public QObject, public ctkPluginActivator
{
  Q_OBJECT
  Q_INTERFACES(ctkPluginActivator)
  Q_PLUGIN_METADATA(IID "org_commontk_dah_pixelstats")

public:
  ctkPixelStatsPlugin();
  ~ctkPixelStatsPlugin() override;

  void start(ctkPluginContext* context) override;
  void stop(ctkPluginContext* context) override;

  static ctkPluginContext* getPluginContext();

private:
  static ctkPluginContext* Context;
  ctkPixelStatsLogic* Logic;
};

#endif
